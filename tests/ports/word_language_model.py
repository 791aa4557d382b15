"""A word-level language model: an LSTM (or a Transformer) trained with truncated BPTT.

Written the way PyTorch's ``word_language_model`` example writes it: ``batchify`` with ``narrow`` and
``view(...).t().contiguous()``, ``get_batch`` over a bptt window, ``repackage_hidden`` between windows,
``init_hidden`` through ``weight.new_zeros``, a ``getattr(nn, rnn_type)`` recurrent layer, ``nn.NLLLoss``
on ``F.log_softmax``, clipping, a hand-written SGD update through ``p.data.add_(p.grad, alpha=-lr)``,
learning-rate annealing, a checkpoint written into an open file, and a ``TransformerModel`` with a
positional-encoding buffer filled by slice assignment. A second phase fine-tunes on whole sentences in
packed variable-length batches (``pad_sequence``, ``pack_padded_sequence``, ``pad_packed_sequence``,
``ignore_index`` on the padding). The corpus comes from a small built-in grammar, so nothing is downloaded.
"""

import argparse
import math
import os
import random
import tempfile

import tinygrad_rnn as torch
import tinygrad_rnn.nn as nn
import tinygrad_rnn.nn.functional as F
from tinygrad_rnn.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence, pad_sequence

# ---- data -------------------------------------------------------------------------------------------

SUBJECTS = "the cat|the dog|a bird|my friend|the teacher|a child".split("|")
VERBS = "sees|likes|follows|finds|hears".split("|")
OBJECTS = "the ball|a tree|the house|the river|a small box|the old car".split("|")


def make_sentences(n, seed):
    rng = random.Random(seed)
    return [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} ." for _ in range(n)]


class Dictionary(object):
    def __init__(self):
        self.word2idx = {"<pad>": 0}
        self.idx2word = ["<pad>"]

    def add_word(self, word):
        if word not in self.word2idx:
            self.idx2word.append(word)
            self.word2idx[word] = len(self.idx2word) - 1
        return self.word2idx[word]

    def __len__(self):
        return len(self.idx2word)


class Corpus(object):
    def __init__(self, n_train=600, n_valid=80):
        self.dictionary = Dictionary()
        self.train_sentences = make_sentences(n_train, seed=1)
        self.valid_sentences = make_sentences(n_valid, seed=2)
        self.train = self.tokenize(self.train_sentences)
        self.valid = self.tokenize(self.valid_sentences)

    def tokenize(self, sentences):
        """Tokenizes a list of sentences into one stream of word ids, with <eos> after each."""
        idss = []
        for line in sentences:
            words = line.split() + ["<eos>"]
            ids = [self.dictionary.add_word(word) for word in words]
            idss.append(torch.tensor(ids).type(torch.int64))
        return torch.cat(idss)


# ---- models ------------------------------------------------------------------------------------------


class RNNModel(nn.Module):
    """Container module with an encoder, a recurrent module, and a decoder."""

    def __init__(self, rnn_type, ntoken, ninp, nhid, nlayers, dropout=0.5, tie_weights=False):
        super(RNNModel, self).__init__()
        self.ntoken = ntoken
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        if rnn_type in ["LSTM", "GRU"]:
            self.rnn = getattr(nn, rnn_type)(ninp, nhid, nlayers, dropout=dropout)
        else:
            try:
                nonlinearity = {"RNN_TANH": "tanh", "RNN_RELU": "relu"}[rnn_type]
            except KeyError as e:
                raise ValueError("An invalid option for `--model` was supplied") from e
            self.rnn = nn.RNN(ninp, nhid, nlayers, nonlinearity=nonlinearity, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)

        if tie_weights:
            if nhid != ninp:
                raise ValueError("When using the tied flag, nhid must be equal to emsize")
            self.decoder.weight = self.encoder.weight

        self.init_weights()

        self.rnn_type = rnn_type
        self.nhid = nhid
        self.nlayers = nlayers

    def init_weights(self):
        initrange = 0.1
        nn.init.uniform_(self.encoder.weight, -initrange, initrange)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -initrange, initrange)

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        decoded = self.decoder(output)
        decoded = decoded.view(-1, self.ntoken)
        return F.log_softmax(decoded, dim=1), hidden

    def forward_packed(self, padded, lengths):
        """Sentences of different lengths in one batch: pack, run, unpack."""
        emb = self.drop(self.encoder(padded))
        packed = pack_padded_sequence(emb, lengths, enforce_sorted=False)
        output, hidden = self.rnn(packed)
        output, _ = pad_packed_sequence(output, total_length=padded.size(0))
        decoded = self.decoder(self.drop(output))
        return F.log_softmax(decoded.view(-1, self.ntoken), dim=1)

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        if self.rnn_type == "LSTM":
            return (weight.new_zeros(self.nlayers, bsz, self.nhid), weight.new_zeros(self.nlayers, bsz, self.nhid))
        else:
            return weight.new_zeros(self.nlayers, bsz, self.nhid)


class PositionalEncoding(nn.Module):
    r"""Inject some information about the relative or absolute position of the tokens in the sequence.

    PosEncoder(pos, 2i) = sin(pos/10000^(2i/d_model)), PosEncoder(pos, 2i+1) = cos(pos/10000^(2i/d_model)).
    """

    def __init__(self, d_model, dropout=0.1, max_len=5000):
        super(PositionalEncoding, self).__init__()
        self.dropout = nn.Dropout(p=dropout)

        pe = torch.zeros(max_len, d_model)
        position = torch.arange(0, max_len, dtype=torch.float).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        pe = pe.unsqueeze(0).transpose(0, 1)
        self.register_buffer("pe", pe)

    def forward(self, x):
        x = x + self.pe[: x.size(0), :]
        return self.dropout(x)


class TransformerModel(nn.Transformer):
    """Container module with an encoder, a transformer encoder, and a decoder."""

    def __init__(self, ntoken, ninp, nhead, nhid, nlayers, dropout=0.5):
        super(TransformerModel, self).__init__(
            d_model=ninp, nhead=nhead, dim_feedforward=nhid, num_encoder_layers=nlayers
        )
        self.model_type = "Transformer"
        self.src_mask = None
        self.pos_encoder = PositionalEncoding(ninp, dropout)

        self.input_emb = nn.Embedding(ntoken, ninp)
        self.ninp = ninp
        self.decoder = nn.Linear(ninp, ntoken)

        self.init_weights()

    def _generate_square_subsequent_mask(self, sz):
        return torch.log(torch.tril(torch.ones(sz, sz)))

    def init_weights(self):
        initrange = 0.1
        nn.init.uniform_(self.input_emb.weight, -initrange, initrange)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -initrange, initrange)

    def forward(self, src, has_mask=True):
        if has_mask:
            device = src.device
            if self.src_mask is None or self.src_mask.size(0) != len(src):
                mask = self._generate_square_subsequent_mask(len(src)).to(device)
                self.src_mask = mask
        else:
            self.src_mask = None

        src = self.input_emb(src) * math.sqrt(self.ninp)
        src = self.pos_encoder(src)
        output = self.encoder(src, mask=self.src_mask)
        output = self.decoder(output)
        return F.log_softmax(output, dim=-1)


# ---- training ----------------------------------------------------------------------------------------


def batchify(data, bsz):
    # Work out how cleanly we can divide the dataset into bsz parts.
    nbatch = data.size(0) // bsz
    # Trim off any extra elements that wouldn't cleanly fit (remainders).
    data = data.narrow(0, 0, nbatch * bsz)
    # Evenly divide the data across the bsz batches.
    data = data.view(bsz, -1).t().contiguous()
    return data


def repackage_hidden(h):
    """Wraps hidden states in new Tensors, to detach them from their history."""
    if isinstance(h, torch.Tensor):
        return h.detach()
    else:
        return tuple(repackage_hidden(v) for v in h)


def get_batch(source, i, bptt):
    seq_len = min(bptt, len(source) - 1 - i)
    data = source[i : i + seq_len]
    target = source[i + 1 : i + 1 + seq_len].view(-1)
    return data, target


def evaluate(model, data_source, ntokens, criterion, bptt, eval_batch_size):
    # Turn on evaluation mode which disables dropout.
    model.eval()
    total_loss = 0.0
    if model.model_type != "Transformer":
        hidden = model.init_hidden(eval_batch_size)
    with torch.no_grad():
        for i in range(0, data_source.size(0) - 1, bptt):
            data, targets = get_batch(data_source, i, bptt)
            if model.model_type == "Transformer":
                output = model(data)
                output = output.view(-1, ntokens)
            else:
                output, hidden = model(data, hidden)
                hidden = repackage_hidden(hidden)
            total_loss += len(data) * criterion(output, targets).item()
    return total_loss / (len(data_source) - 1)


def train_epoch(model, train_data, ntokens, criterion, lr, args):
    # Turn on training mode which enables dropout.
    model.train()
    total_loss = 0.0
    losses = []
    if model.model_type != "Transformer":
        hidden = model.init_hidden(args.batch_size)
    for batch, i in enumerate(range(0, train_data.size(0) - 1, args.bptt)):
        data, targets = get_batch(train_data, i, args.bptt)
        # Starting each batch, we detach the hidden state from how it was previously produced.
        # If we didn't, the model would try backpropagating all the way to start of the dataset.
        model.zero_grad()
        if model.model_type == "Transformer":
            output = model(data)
            output = output.view(-1, ntokens)
        else:
            hidden = repackage_hidden(hidden)
            output, hidden = model(data, hidden)
        loss = criterion(output, targets)
        loss.backward()

        # `clip_grad_norm` helps prevent the exploding gradient problem in RNNs / LSTMs.
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-lr)

        total_loss += loss.item()
        losses.append(loss.item())
    return losses


def train_packed_sentences(model, corpus, lr, args):
    """Fine-tune on whole sentences, a packed batch of different lengths at a time."""
    model.train()
    criterion = nn.NLLLoss(ignore_index=0)
    sentences = [corpus.tokenize([s]) for s in corpus.train_sentences[: args.packed_sentences]]
    losses = []
    for start in range(0, len(sentences), args.batch_size):
        chunk = sentences[start : start + args.batch_size]
        inputs = [s[:-1] for s in chunk]
        targets = [s[1:] for s in chunk]
        lengths = torch.tensor([len(s) for s in inputs])
        padded_inputs = pad_sequence(inputs)  # (T, B), padded with 0 = <pad>
        padded_targets = pad_sequence(targets)
        model.zero_grad()
        output = model.forward_packed(padded_inputs, lengths)
        loss = criterion(output, padded_targets.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-lr)
        losses.append(loss.item())
    return losses


def build_parser():
    parser = argparse.ArgumentParser(description="Word-level language model")
    parser.add_argument("--model", type=str, default="LSTM",
                        help="type of network (RNN_TANH, RNN_RELU, LSTM, GRU, Transformer)")
    parser.add_argument("--emsize", type=int, default=32, help="size of word embeddings")
    parser.add_argument("--nhid", type=int, default=64, help="number of hidden units per layer")
    parser.add_argument("--nlayers", type=int, default=2, help="number of layers")
    parser.add_argument("--lr", type=float, default=10.0, help="initial learning rate")
    parser.add_argument("--clip", type=float, default=0.25, help="gradient clipping")
    parser.add_argument("--epochs", type=int, default=4, help="upper epoch limit")
    parser.add_argument("--batch_size", type=int, default=8, metavar="N", help="batch size")
    parser.add_argument("--bptt", type=int, default=10, help="sequence length")
    parser.add_argument("--dropout", type=float, default=0.1, help="dropout applied to layers (0 = no dropout)")
    parser.add_argument("--tied", action="store_true", help="tie the word embedding and softmax weights")
    parser.add_argument("--seed", type=int, default=1111, help="random seed")
    parser.add_argument("--nhead", type=int, default=2, help="the number of heads in the transformer model")
    parser.add_argument("--packed_sentences", type=int, default=160, help="sentences in the packed phase")
    parser.add_argument("--save", type=str, default=os.path.join(tempfile.gettempdir(), "word_lm.pt"),
                        help="path to save the final model")
    return parser


def main(argv=None, verbose=True):
    args = build_parser().parse_args(argv)
    torch.manual_seed(args.seed)
    corpus = Corpus()
    eval_batch_size = 10
    train_data = batchify(corpus.train, args.batch_size)
    val_data = batchify(corpus.valid, eval_batch_size)

    ntokens = len(corpus.dictionary)
    if args.model == "Transformer":
        model = TransformerModel(ntokens, args.emsize, args.nhead, args.nhid, args.nlayers, args.dropout)
    else:
        model = RNNModel(args.model, ntokens, args.emsize, args.nhid, args.nlayers, args.dropout, args.tied)
        model.model_type = "RNN"
    criterion = nn.NLLLoss()

    lr = args.lr
    best_val_loss = None
    train_losses, val_losses = [], []
    for epoch in range(1, args.epochs + 1):
        train_losses += train_epoch(model, train_data, ntokens, criterion, lr, args)
        val_loss = evaluate(model, val_data, ntokens, criterion, args.bptt, eval_batch_size)
        val_losses.append(val_loss)
        if verbose:
            print(f"| end of epoch {epoch:3d} | valid loss {val_loss:5.2f} | valid ppl {math.exp(val_loss):8.2f}")
        # Save the model if the validation loss is the best we've seen so far.
        if not best_val_loss or val_loss < best_val_loss:
            with open(args.save, "wb") as f:
                torch.save(model.state_dict(), f)
            best_val_loss = val_loss
        else:
            # Anneal the learning rate if no improvement has been seen in the validation dataset.
            lr /= 4.0

    # Load the best saved model.
    with open(args.save, "rb") as f:
        model.load_state_dict(torch.load(f))

    packed_losses = []
    if args.model != "Transformer":
        packed_losses = train_packed_sentences(model, corpus, lr, args)
        if verbose:
            print(f"| packed sentences | first loss {packed_losses[0]:5.2f} | last loss {packed_losses[-1]:5.2f}")
    test_loss = evaluate(model, val_data, ntokens, criterion, args.bptt, eval_batch_size)
    if verbose:
        print(f"| End of training | valid loss {test_loss:5.2f} | valid ppl {math.exp(test_loss):8.2f}")
    return {"train_losses": train_losses, "val_losses": val_losses, "packed_losses": packed_losses,
            "final_val_loss": test_loss, "ntokens": ntokens}


if __name__ == "__main__":
    main()
