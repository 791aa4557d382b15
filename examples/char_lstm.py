"""Train a character-level LSTM (or GRU) language model with truncated BPTT.

The default run trains on the documentation text that CPython ships (``pydoc_data``), so it needs no
download, and finishes in about two minutes on a 2-core CPU. It prints the validation loss in bits per
character next to a unigram model's, samples text now and then, saves a checkpoint atomically (also on
Ctrl-C) and a loss-curve PNG into ``--out``::

    python examples/char_lstm.py                          # the default run
    python examples/char_lstm.py --cell gru --text my.txt # another cell, your own text
    python examples/char_lstm.py --resume                 # continue from the checkpoint in --out
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import time
from typing import Any

# Set before NumPy loads: the matrices here are small, and BLAS threads that spin waiting for work cost
# far more than they save, above all on a machine that is busy with something else.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import numpy as np  # noqa: E402

import tinygrad_rnn as tg  # noqa: E402
import tinygrad_rnn.nn.functional as F  # noqa: E402
from tinygrad_rnn import bptt, data, nn, optim, plot  # noqa: E402
from tinygrad_rnn.host_memory import retain_freed_memory  # noqa: E402

LOG2_E = 1.0 / math.log(2.0)


class CharModel(nn.Module):
    """Embedding → LSTM/GRU → Linear read-out: logits of the next character at every step.

    ``forward(ids (T, B), hidden)`` returns logits ``(T, B, V)`` and the new hidden state.
    """

    def __init__(self, vocab_size: int, embedding_dim: int, hidden_size: int, num_layers: int, cell: str):
        super().__init__()
        recurrent = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.rnn = recurrent(embedding_dim, hidden_size, num_layers=num_layers)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, ids: tg.Tensor, hidden: Any = None) -> tuple[tg.Tensor, Any]:
        output, hidden = self.rnn(self.embedding(ids), hidden)
        return self.head(output), hidden


def next_char_loss(logits: tg.Tensor, targets: tg.Tensor) -> tg.Tensor:
    """Mean cross-entropy (nats) of the next character over all steps and streams."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def evaluate_bits(model: CharModel, inputs: tg.Tensor, targets: tg.Tensor, length: int = 256) -> float:
    """Bits per character of the model on a batchified held-out stream, carrying the state across chunks."""
    model.eval()
    total, count, hidden = 0.0, 0, None
    with tg.no_grad():
        for x, y in data.chunks(inputs, targets, length):
            logits, hidden = model(x, hidden)
            total += next_char_loss(logits, y).item() * y.numel()
            count += y.numel()
    model.train()
    return total / count * LOG2_E


def sample(
    model: CharModel, vocab: data.CharVocabulary, primer: str, length: int, temperature: float, seed: int
) -> str:
    """Generate ``length`` characters after ``primer``, drawing from softmax(logits / temperature)."""
    rng = np.random.default_rng(seed)
    device = next(iter(model.parameters())).device
    model.eval()
    out = []
    with tg.no_grad():
        ids = tg.tensor(vocab.encode(primer)[:, None], device=device)
        logits, hidden = model(ids, None)
        for _ in range(length):
            scaled = logits[-1, 0].numpy().astype(np.float64) / max(temperature, 1e-6)
            probabilities = np.exp(scaled - scaled.max())
            probabilities /= probabilities.sum()
            choice = int(rng.choice(len(probabilities), p=probabilities))
            out.append(choice)
            logits, hidden = model(tg.tensor([[choice]], device=device), hidden)
    model.train()
    return primer + vocab.decode(out)


def save_checkpoint(
    path: str, model: CharModel, optimizer: Any, vocab: data.CharVocabulary, meta: dict
) -> None:
    """Model, optimizer, vocabulary and progress in one ``.npz``, written atomically by ``tg.save``."""
    tg.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "vocab": vocab.codes(),
            "meta": meta,
        },
        path,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--text", default=None, help="train on this UTF-8 file instead of CPython's docs")
    parser.add_argument("--max-chars", type=int, default=None, help="use only the first characters")
    parser.add_argument("--cell", choices=["lstm", "gru"], default="lstm")
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--embedding-dim", type=int, default=32)
    parser.add_argument("--num-layers", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--k1", type=int, default=32, help="new steps between updates")
    parser.add_argument("--k2", type=int, default=32, help="steps the backward pass reaches back")
    parser.add_argument("--steps", type=int, default=1200, help="optimizer updates in total")
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--clip", type=float, default=1.0, help="max gradient norm")
    parser.add_argument("--eval-every", type=int, default=200, help="updates between validations")
    parser.add_argument("--eval-chars", type=int, default=20000, help="held-out chars per periodic check")
    parser.add_argument(
        "--checkpoint-every", type=int, default=200, help="updates between checkpoints (0: only at the end)"
    )
    parser.add_argument("--sample-every", type=int, default=400, help="updates between samples")
    parser.add_argument("--sample-chars", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("runs", "char_lstm"))
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs instead)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        tg.backend.xp_for(tg.backend.device(args.device))
    except (RuntimeError, ValueError, TypeError) as error:
        print(f"--device {args.device}: {error}", file=sys.stderr)
        return 2
    # Each update frees and allocates the same big arrays again: keep the freed memory in the process
    # rather than let glibc hand it back and page-fault it in again (host_memory.py).
    retain_freed_memory()
    os.makedirs(args.out, exist_ok=True)
    checkpoint_path = os.path.join(args.out, "checkpoint.npz")
    tg.manual_seed(args.seed)

    text = data.load_corpus(args.text or "pydoc", max_chars=args.max_chars)
    saved = None
    if args.resume:
        if not os.path.exists(checkpoint_path):
            print(f"no checkpoint at {checkpoint_path} to resume from", file=sys.stderr)
            return 2
        saved = tg.load(checkpoint_path)
    vocab = data.CharVocabulary.from_codes(saved["vocab"]) if saved else data.CharVocabulary(text)
    train_text, valid_text = data.split_text(text, 0.1)
    train_ids, valid_ids = vocab.encode(train_text), vocab.encode(valid_text)
    unigram = data.unigram_bits_per_char(train_ids, valid_ids, len(vocab))
    train_x, train_y = data.batchify(train_ids, args.batch_size, device=args.device)
    valid_x, valid_y = data.batchify(valid_ids, args.batch_size, device=args.device)
    check_steps = max(1, args.eval_chars // args.batch_size)
    check_x, check_y = valid_x[:check_steps], valid_y[:check_steps]

    model = CharModel(len(vocab), args.embedding_dim, args.hidden_size, args.num_layers, args.cell).to(
        args.device
    )
    optimizer = optim.Adam(model.parameters(), lr=args.lr)
    meta: dict[str, Any] = {"step": 0, "position": 0, "history": [], "valid": [], "seconds": 0.0}
    if saved:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        meta = saved["meta"]
        print(f"resumed from {checkpoint_path} at update {meta['step']}")

    parameters = sum(p.numel() for p in model.parameters())
    print(
        f"corpus: {len(text):,} chars ({len(train_ids):,} train, {len(valid_ids):,} held out), "
        f"vocabulary {len(vocab)}; model: {args.cell.upper()} hidden {args.hidden_size} x {args.num_layers}, "
        f"{parameters:,} parameters; TBPTT k1={args.k1} k2={args.k2}, batch {args.batch_size}"
    )
    print(f"unigram model: {unigram:.3f} bits/char on the held-out text")

    interrupted = {"flag": False}

    def on_interrupt(signum: int, frame: Any) -> None:
        # Finish the update in flight, then save: a checkpoint taken mid-step would mix old and new weights.
        interrupted["flag"] = True

    previous_handler = signal.signal(signal.SIGINT, on_interrupt)
    # The trainer yields after each update (clipping and the optimizer step done), so that the progress
    # bar, validation, samples and a clean stop on Ctrl-C sit between updates.
    trainer = bptt.TBPTTTrainer(
        model, optimizer, k1=args.k1, k2=args.k2, clip_norm=args.clip, loss_fn=next_char_loss
    )
    print("training", flush=True)
    progress = Progress(args, meta["step"])
    started = time.perf_counter() - meta["seconds"]
    window: list[float] = []
    try:
        while meta["step"] < args.steps and not interrupted["flag"]:
            if meta["position"] + args.k1 >= train_x.shape[0]:
                meta["position"] = 0  # a new pass over the text
            offset = meta["position"]
            tick = time.perf_counter()
            for update in trainer.updates(train_x[offset:], train_y[offset:]):
                meta["position"] = offset + update.stop
                meta["step"] += 1
                bits = update.loss * LOG2_E
                window.append(bits)
                meta["history"].append([meta["step"], bits])
                now = time.perf_counter()
                progress.update(
                    meta["step"], bits, (update.stop - update.start) * args.batch_size / (now - tick)
                )
                tick = now
                if meta["step"] % args.eval_every == 0 or meta["step"] == args.steps:
                    valid_bits = evaluate_bits(model, check_x, check_y)
                    meta["valid"].append([meta["step"], valid_bits])
                    progress.write(
                        f"update {meta['step']}: train {sum(window) / len(window):.3f} bits/char, "
                        f"held-out {valid_bits:.3f} bits/char (unigram {unigram:.3f})"
                    )
                    window = []
                if args.checkpoint_every and meta["step"] % args.checkpoint_every == 0:
                    # A crash or a kill then loses at most this many updates, never the last checkpoint:
                    # tg.save replaces the file atomically.
                    meta["seconds"] = time.perf_counter() - started
                    save_checkpoint(checkpoint_path, model, optimizer, vocab, meta)
                if args.sample_every and meta["step"] % args.sample_every == 0:
                    text_out = sample(model, vocab, "The ", args.sample_chars, args.temperature, meta["step"])
                    progress.write(f"--- sample (temperature {args.temperature}) ---\n{text_out}\n---")
                if meta["step"] >= args.steps or interrupted["flag"]:
                    break
                tick = time.perf_counter()
    finally:
        signal.signal(signal.SIGINT, previous_handler)
        progress.close()
        meta["seconds"] = time.perf_counter() - started
        save_checkpoint(checkpoint_path, model, optimizer, vocab, meta)

    if interrupted["flag"]:
        print(
            f"interrupted at update {meta['step']}: checkpoint saved to {checkpoint_path}; "
            "continue with --resume"
        )
        return 0

    valid_bits = evaluate_bits(model, valid_x, valid_y)
    history = np.array(meta["history"])
    smooth = (
        np.convolve(history[:, 1], np.ones(20) / 20, mode="valid") if len(history) >= 20 else history[:, 1]
    )
    chars_per_update = args.k1 * args.batch_size
    figure = plot.loss_curve(
        os.path.join(args.out, "loss_curve.png"),
        (history[len(history) - len(smooth) :, 0] * chars_per_update, smooth),
        (np.array([v[0] for v in meta["valid"]]) * chars_per_update, [v[1] for v in meta["valid"]]),
        baseline=unigram,
        train_label="train (mean of the last 20 updates)",
    )
    print(f"--- sample (temperature {args.temperature}) ---")
    print(sample(model, vocab, "The ", args.sample_chars, args.temperature, args.seed))
    print("---")
    print(
        f"trained {meta['step']} updates ({meta['step'] * chars_per_update:,} chars) "
        f"in {meta['seconds']:.1f} s"
    )
    print(f"held-out bits per character: model {valid_bits:.3f}, unigram {unigram:.3f}")
    print(f"checkpoint: {checkpoint_path}; loss curve: {figure}")
    return 0


class Progress:
    """A tqdm bar showing the loss and characters per second, or plain log lines with --no-progress."""

    def __init__(self, args: argparse.Namespace, start: int) -> None:
        self.bar = None
        self.total = args.steps
        if not args.no_progress:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=args.steps, initial=start, unit="update", dynamic_ncols=True)
            except ImportError:
                self.bar = None
        self.last = start

    def update(self, step: int, bits: float, speed: float) -> None:
        if self.bar is not None:
            self.bar.update(step - self.last)
            self.bar.set_postfix(bpc=f"{bits:.3f}", chars_per_s=f"{speed:,.0f}", refresh=False)
        elif step % 50 == 0:
            print(f"update {step}/{self.total}: {bits:.3f} bits/char, {speed:,.0f} chars/s", flush=True)
        self.last = step

    def write(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(message)
        else:
            print(message, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


if __name__ == "__main__":
    sys.exit(main())
