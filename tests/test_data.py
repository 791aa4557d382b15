"""Tests for the sequence tasks, the character vocabulary, the corpora and stream batching."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_rnn as tg
from tinygrad_rnn import data


@given(
    batch=st.integers(1, 6),
    length=st.integers(4, 40),
    seed=st.integers(0, 2**16),
)
def test_adding_problem_target_is_the_sum_of_the_two_marked_values(batch, length, seed):
    inputs, targets = data.adding_problem(batch, length, seed=seed)
    x, y = inputs.numpy(), targets.numpy()
    assert x.shape == (length, batch, 2) and y.shape == (batch, 1)
    assert np.all(x[:, :, 1].sum(axis=0) == 2)
    expected = (x[:, :, 0] * x[:, :, 1]).sum(axis=0)
    np.testing.assert_allclose(y[:, 0], expected, rtol=1e-6)


@given(length=st.integers(6, 60), data_=st.data())
def test_adding_problem_places_both_markers_inside_the_lag_range(length, data_):
    min_lag = data_.draw(st.integers(0, length - 2))
    max_lag = data_.draw(st.integers(min_lag + 1, length - 1))
    inputs, _ = data.adding_problem(16, length, seed=1, min_lag=min_lag, max_lag=max_lag)
    markers = inputs.numpy()[:, :, 1]
    for column in markers.T:
        lags = length - 1 - np.flatnonzero(column)
        assert len(lags) == 2 and np.all((lags >= min_lag) & (lags <= max_lag))


def test_adding_problem_default_puts_one_marker_in_each_half():
    inputs, _ = data.adding_problem(64, 30, seed=2)
    markers = inputs.numpy()[:, :, 1]
    assert np.all(markers[:15].sum(axis=0) == 1) and np.all(markers[15:].sum(axis=0) == 1)


def test_adding_problem_is_reproducible_from_its_seed_and_differs_between_seeds():
    a, _ = data.adding_problem(4, 20, seed=3)
    b, _ = data.adding_problem(4, 20, seed=3)
    c, _ = data.adding_problem(4, 20, seed=4)
    assert np.array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(a.numpy(), c.numpy())


def test_adding_problem_uses_the_default_float_dtype_and_rejects_impossible_lags():
    inputs, targets = data.adding_problem(2, 10, seed=0)
    assert inputs.dtype == tg.float32 and targets.dtype == tg.float32
    with pytest.raises(ValueError, match="min_lag"):
        data.adding_problem(2, 10, min_lag=12)
    with pytest.raises(ValueError, match="min_lag"):
        data.adding_problem(2, 10, min_lag=4, max_lag=4)
    with pytest.raises(ValueError, match="length"):
        data.adding_problem(2, 1)


@given(
    symbols=st.integers(1, 9),
    sequence_length=st.integers(1, 6),
    delay=st.integers(1, 12),
    seed=st.integers(0, 1000),
)
def test_copy_task_recall_steps_repeat_the_symbols_after_the_delay(symbols, sequence_length, delay, seed):
    inputs, targets = data.copy_task(3, symbols, sequence_length, delay, seed=seed)
    x, y = inputs.numpy(), targets.numpy()
    length = 2 * sequence_length + delay
    assert x.shape == y.shape == (length, 3) and x.dtype == np.int64
    recall = slice(sequence_length + delay, length)
    np.testing.assert_array_equal(y[recall], x[:sequence_length])
    assert np.all(y[: sequence_length + delay] == data.IGNORE_INDEX)
    assert np.all((x[:sequence_length] >= 1) & (x[:sequence_length] <= symbols))
    assert np.all(x[sequence_length + delay - 1] == symbols + 1)
    others = np.ones(length, dtype=bool)
    others[:sequence_length] = False
    others[sequence_length + delay - 1] = False
    assert np.all(x[others] == 0)


def test_char_vocabulary_encode_decode_round_trip_and_unknown_characters():
    vocab = data.CharVocabulary("hello world")
    assert len(vocab) == len(set("hello world"))
    ids = vocab.encode("world hello")
    assert ids.dtype == np.int64 and ids.min() >= 0 and ids.max() < len(vocab)
    assert vocab.decode(ids) == "world hello"
    assert vocab.decode(tg.tensor(ids)) == "world hello"
    unknown = data.CharVocabulary("abc", unknown="c")
    assert unknown.decode(unknown.encode("axb")) == "acb"
    with pytest.raises(IndexError, match="decode"):
        vocab.decode([len(vocab)])


def test_char_vocabulary_survives_a_round_trip_through_code_points():
    vocab = data.CharVocabulary("naïve “quotes” ß\n")
    again = data.CharVocabulary.from_codes(vocab.codes())
    assert again.chars == vocab.chars


def test_load_corpus_gives_text_that_ships_with_python(tmp_path):
    text = data.load_corpus("pydoc", max_chars=50_000)
    assert len(text) == 50_000 and len(set(text)) > 40
    source = data.load_corpus("stdlib", max_chars=20_000)
    assert "def " in source
    path = tmp_path / "tiny.txt"
    path.write_text("abcabc", encoding="utf-8")
    assert data.load_corpus(str(path)) == "abcabc"
    with pytest.raises(FileNotFoundError, match="no such file"):
        data.load_corpus(str(tmp_path / "missing.txt"))


def test_unigram_bits_per_char_is_the_entropy_for_a_matching_split():
    train = np.array([0, 0, 1, 1, 2, 2, 3, 3] * 50)
    bits = data.unigram_bits_per_char(train, train, 4)
    assert math.isclose(bits, 2.0, rel_tol=1e-12)
    skewed = np.array([0] * 90 + [1] * 10)
    expected = -(0.9 * math.log2(91 / 102) + 0.1 * math.log2(11 / 102))
    assert math.isclose(data.unigram_bits_per_char(skewed, skewed, 2), expected, rel_tol=1e-12)


@given(size=st.integers(2, 200), batch=st.integers(1, 8))
def test_batchify_columns_are_contiguous_text_with_next_character_targets(size, batch):
    stream = np.arange(size) * 7 % 101
    if (size - 1) // batch < 1:
        with pytest.raises(ValueError, match="batchify"):
            data.batchify(stream, batch)
        return
    inputs, targets = data.batchify(stream, batch)
    x, y = inputs.numpy(), targets.numpy()
    steps = (size - 1) // batch
    assert x.shape == y.shape == (steps, batch)
    for b in range(batch):
        np.testing.assert_array_equal(x[:, b], stream[b * steps : (b + 1) * steps])
        np.testing.assert_array_equal(y[:, b], stream[b * steps + 1 : (b + 1) * steps + 1])


@given(steps=st.integers(1, 50), length=st.integers(1, 12))
def test_chunks_cover_the_stream_in_order(steps, length):
    inputs, targets = data.batchify(np.arange(steps * 2 + 1), 2)
    pieces = list(data.chunks(inputs, targets, length))
    assert len(pieces) == data.num_chunks(steps, length)
    np.testing.assert_array_equal(np.concatenate([p[0].numpy() for p in pieces]), inputs.numpy())
    np.testing.assert_array_equal(np.concatenate([p[1].numpy() for p in pieces]), targets.numpy())
    assert all(p[0].shape[0] == length for p in pieces[:-1])


def test_chunks_reject_mismatched_streams():
    a, b = data.batchify(np.arange(21), 2)
    with pytest.raises(ValueError, match="differ in length"):
        list(data.chunks(a, b[:-1], 3))
