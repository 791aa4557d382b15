"""Classify surnames by language with a character-level RNN.

Written the way PyTorch's "NLP From Scratch: Classifying Names with a Character-Level RNN" tutorial
writes it: one-hot letter tensors filled by index assignment, a ``Dataset`` subclass, ``random_split``
with a seeded ``torch.Generator``, ``nn.RNN`` + ``nn.Linear`` + ``nn.LogSoftmax``, ``nn.NLLLoss``,
``output.topk(1)`` to read the guess, SGD with gradient clipping; batches come from a ``DataLoader``.
The names are a small built-in list, so nothing is downloaded.
"""

import string
import unicodedata

import tinygrad_rnn as torch
import tinygrad_rnn.nn as nn
from tinygrad_rnn.utils.data import DataLoader, Dataset

allowed_characters = string.ascii_letters + " .,;'"
n_letters = len(allowed_characters)

NAMES = {
    "English": "Smith Johnson Williams Brown Jones Miller Davis Wilson Taylor Clark Lewis Walker Hall Allen "
    "Young Wright Hill Green Baker Adams Nelson Carter Mitchell Roberts Turner Phillips Campbell Parker "
    "Evans Edwards Collins Stewart Morris Rogers Cook Morgan Bell Murphy Bailey Cooper",
    "Italian": "Rossi Russo Ferrari Esposito Bianchi Romano Colombo Ricci Marino Greco Bruno Gallo Conti "
    "DeLuca Mancini Costa Giordano Rizzo Lombardi Moretti Barbieri Fontana Santoro Mariani Rinaldi "
    "Caruso Ferrara Galli Martini Leone Longo Gentile Martinelli Vitale Lombardo Serra Coppola DeSantis "
    "Marchetti Parisi",
    "Japanese": "Sato Suzuki Takahashi Tanaka Watanabe Ito Yamamoto Nakamura Kobayashi Kato Yoshida "
    "Yamada Sasaki Yamaguchi Matsumoto Inoue Kimura Hayashi Shimizu Yamazaki Mori Abe Ikeda Hashimoto "
    "Yamashita Ishikawa Nakajima Maeda Fujita Ogawa Goto Okada Hasegawa Murakami Kondo Ishii Sakamoto "
    "Endo Aoki Fujii",
    "Russian": "Ivanov Smirnov Kuznetsov Popov Vasiliev Petrov Sokolov Mikhailov Novikov Fedorov "
    "Morozov Volkov Alekseev Lebedev Semenov Egorov Pavlov Kozlov Stepanov Nikolaev Orlov Andreev "
    "Makarov Nikitin Zakharov Zaitsev Soloviev Borisov Yakovlev Grigoriev Romanov Vorobiev Sergeev "
    "Kuzmin Frolov Alexandrov Dmitriev Korolev Gusev Kiselev",
}


# Turn a Unicode string to plain ASCII
def unicodeToAscii(s):
    return "".join(
        c for c in unicodedata.normalize("NFD", s) if unicodedata.category(c) != "Mn" and c in allowed_characters
    )


# Find letter index from all_letters, e.g. "a" = 0
def letterToIndex(letter):
    return allowed_characters.find(letter)


# Turn a line into a <line_length x 1 x n_letters>,
# or an array of one-hot letter vectors
def lineToTensor(line):
    tensor = torch.zeros(len(line), 1, n_letters)
    for li, letter in enumerate(line):
        tensor[li][0][letterToIndex(letter)] = 1
    return tensor


class NamesDataset(Dataset):
    def __init__(self, names_by_language):
        self.data = []
        self.data_tensors = []
        self.labels = []
        self.labels_tensors = []
        labels_set = set()
        for label, lines in names_by_language.items():
            labels_set.add(label)
            for name in lines.split():
                self.data.append(name)
                self.data_tensors.append(lineToTensor(unicodeToAscii(name)))
                self.labels.append(label)
        self.labels_uniq = sorted(labels_set)
        for idx in range(len(self.labels)):
            temp_tensor = torch.tensor([self.labels_uniq.index(self.labels[idx])], dtype=torch.long)
            self.labels_tensors.append(temp_tensor)

    def __len__(self):
        return len(self.data)

    def __getitem__(self, idx):
        data_item = self.data[idx]
        data_label = self.labels[idx]
        data_tensor = self.data_tensors[idx]
        label_tensor = self.labels_tensors[idx]
        return label_tensor, data_tensor, data_label, data_item


class CharRNN(nn.Module):
    def __init__(self, input_size, hidden_size, output_size):
        super(CharRNN, self).__init__()
        self.rnn = nn.RNN(input_size, hidden_size)
        self.h2o = nn.Linear(hidden_size, output_size)
        self.softmax = nn.LogSoftmax(dim=1)

    def forward(self, line_tensor):
        rnn_out, hidden = self.rnn(line_tensor)
        output = self.h2o(hidden[0])
        output = self.softmax(output)
        return output


def label_from_output(output, output_labels):
    top_n, top_i = output.topk(1)
    label_i = top_i[0].item()
    return output_labels[label_i], label_i


def keep_as_list(batch):
    """The names differ in length, so a batch stays a list of examples."""
    return batch


def train(rnn, training_data, n_epoch=10, n_batch_size=16, report_every=5, learning_rate=0.2,
          criterion=nn.NLLLoss(), verbose=True):
    """Learn on a batch of training_data for a specified number of iterations and report thresholds."""
    current_loss = 0
    all_losses = []
    rnn.train()
    optimizer = torch.optim.SGD(rnn.parameters(), lr=learning_rate)
    loader = DataLoader(training_data, batch_size=n_batch_size, shuffle=True, collate_fn=keep_as_list,
                        generator=torch.Generator().manual_seed(2024))

    for iter in range(1, n_epoch + 1):
        rnn.zero_grad()  # clear the gradients
        for batch in loader:
            batch_loss = 0
            for (label_tensor, text_tensor, label, text) in batch:
                output = rnn.forward(text_tensor)
                loss = criterion(output, label_tensor)
                batch_loss += loss

            # optimize parameters
            batch_loss.backward()
            nn.utils.clip_grad_norm_(rnn.parameters(), 3)
            optimizer.step()
            optimizer.zero_grad()

            current_loss += batch_loss.item() / len(batch)

        all_losses.append(current_loss / len(loader))
        if verbose and iter % report_every == 0:
            print(f"{iter} ({iter / n_epoch:.0%}): \t average batch loss = {all_losses[-1]}")
        current_loss = 0

    return all_losses


def evaluate(rnn, testing_data, classes):
    confusion = torch.zeros(len(classes), len(classes))
    rnn.eval()  # set to eval mode
    with torch.no_grad():  # do not record the gradients during eval phase
        for i in range(len(testing_data)):
            (label_tensor, text_tensor, label, text) = testing_data[i]
            output = rnn(text_tensor)
            guess, guess_i = label_from_output(output, classes)
            label_i = classes.index(label)
            confusion[label_i][guess_i] += 1
    # Normalize by dividing every row by its sum
    for i in range(len(classes)):
        denom = confusion[i].sum()
        if denom > 0:
            confusion[i] = confusion[i] / denom
    return confusion


def main(n_epoch=12, n_hidden=64, verbose=True):
    torch.manual_seed(0)
    alldata = NamesDataset(NAMES)
    train_set, test_set = torch.utils.data.random_split(
        alldata, [0.85, 0.15], generator=torch.Generator().manual_seed(2024)
    )
    rnn = CharRNN(n_letters, n_hidden, len(alldata.labels_uniq))
    all_losses = train(rnn, train_set, n_epoch=n_epoch, learning_rate=0.15, report_every=4, verbose=verbose)
    confusion = evaluate(rnn, alldata, classes=alldata.labels_uniq)
    accuracy = float(confusion.diagonal().mean().item())
    if verbose:
        print(f"mean per-class accuracy on all names: {accuracy:.3f}")
    return {"losses": all_losses, "accuracy": accuracy, "confusion": confusion.numpy()}


if __name__ == "__main__":
    main()
