"""tg.Generator and seeding, randperm/multinomial, and tg.utils.data: datasets, random_split, samplers,
default_collate and DataLoader, checked against PyTorch's documented behaviour."""

import collections
import io
import warnings

import numpy as np
import pytest
from fake_cupy import install

import tinygrad_rnn as tg
from tinygrad_rnn import nn, optim
from tinygrad_rnn.utils.data import (
    BatchSampler,
    ConcatDataset,
    DataLoader,
    Dataset,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    Subset,
    SubsetRandomSampler,
    TensorDataset,
    WeightedRandomSampler,
    default_collate,
    random_split,
)

# ---- generators and seeding ------------------------------------------------------------------------------


def test_a_fresh_generator_has_pytorchs_default_seed_and_is_deterministic():
    a, b = tg.Generator(), tg.Generator(device="cpu")
    assert a.initial_seed() == 67280421310721 and a.device == "cpu"
    np.testing.assert_array_equal(tg.randperm(20, generator=a).numpy(), tg.randperm(20, generator=b).numpy())


def test_manual_seed_returns_the_generator_and_restarts_its_stream():
    g = tg.Generator()
    assert g.manual_seed(5) is g and g.initial_seed() == 5
    first = tg.randn(4, generator=g).numpy()
    second = tg.randn(4, generator=g).numpy()
    g.manual_seed(5)
    np.testing.assert_array_equal(tg.randn(4, generator=g).numpy(), first)
    assert not np.array_equal(first, second)
    assert not np.array_equal(tg.randn(4, generator=tg.Generator().manual_seed(6)).numpy(), first)
    assert g.manual_seed(-1).initial_seed() == 2**64 - 1  # negative seeds wrap, as in PyTorch


def test_seed_draws_a_new_seed_and_reports_it():
    g = tg.Generator()
    chosen = g.seed()
    assert g.initial_seed() == chosen and chosen != tg.Generator().seed()


def test_get_state_and_set_state_replay_the_stream_exactly_also_through_tg_save():
    g = tg.Generator().manual_seed(1)
    tg.rand(3, generator=g)
    state = g.get_state()
    assert isinstance(state, tg.Tensor) and state.dtype == np.uint8
    expected = tg.randn(7, generator=g).numpy()
    buffer = io.BytesIO()
    tg.save({"rng": state}, buffer)
    buffer.seek(0)
    other = tg.Generator().set_state(tg.load(buffer)["rng"])
    np.testing.assert_array_equal(tg.randn(7, generator=other).numpy(), expected)
    with pytest.raises(ValueError, match="37 bytes"):
        g.set_state(tg.zeros(5))
    with pytest.raises(TypeError, match="uint8 Tensor"):
        g.set_state([1, 2, 3])


def test_tg_manual_seed_returns_and_seeds_the_default_generator_that_randn_uses():
    assert tg.manual_seed(12) is tg.default_generator
    assert tg.initial_seed() == tg.default_generator.initial_seed() == 12
    a = tg.randn(5).numpy()
    tg.default_generator.manual_seed(12)
    np.testing.assert_array_equal(tg.randn(5).numpy(), a)
    state = tg.get_rng_state()
    b = tg.rand(3).numpy()
    tg.set_rng_state(state)
    np.testing.assert_array_equal(tg.rand(3).numpy(), b)
    assert tg.default_generator.manual_seed(3).initial_seed() == 3
    tg.manual_seed(4)
    assert tg.initial_seed() == 4  # the global seed replaced the generator's own


def test_an_unseeded_process_still_reports_the_seed_it_runs_from():
    assert isinstance(tg.initial_seed(), int)


def test_drawing_from_a_generator_leaves_the_default_stream_alone():
    tg.manual_seed(0)
    expected = tg.randn(3).numpy()
    tg.manual_seed(0)
    g = tg.Generator().manual_seed(9)
    tg.randn(10, generator=g)
    tg.rand(10, generator=g)
    tg.randint(0, 5, (10,), generator=g)
    tg.randperm(10, generator=g)
    np.testing.assert_array_equal(tg.randn(3).numpy(), expected)


def test_generator_arguments_are_checked():
    with pytest.raises(TypeError, match="Generator"):
        tg.randn(3, generator=np.random.default_rng(0))
    with pytest.raises(TypeError, match="seed must be an int"):
        tg.Generator().manual_seed(1.5)
    with pytest.raises(ValueError, match="out of range"):
        tg.manual_seed(2**64)
    with pytest.raises(ValueError, match="device"):
        tg.Generator(device="tpu")


def test_randperm_is_a_permutation_of_the_asked_dtype():
    p = tg.randperm(50, generator=tg.Generator().manual_seed(2))
    assert p.dtype == np.int64 and sorted(p.tolist()) == list(range(50))
    assert tg.randperm(0).shape == (0,)
    assert tg.randperm(4, dtype=tg.float32).dtype == np.float32
    with pytest.raises(ValueError, match="non-negative"):
        tg.randperm(-1)


def test_multinomial_with_replacement_matches_the_probabilities():
    weights = np.array([1.0, 0.0, 3.0, 6.0])
    draws = tg.multinomial(
        tg.tensor(weights), 20000, replacement=True, generator=tg.Generator().manual_seed(0)
    )
    counts = np.bincount(draws.numpy(), minlength=4) / 20000
    # 20000 draws: the standard error of each frequency is below 0.0035; 5 of them is the bound.
    np.testing.assert_allclose(counts, weights / weights.sum(), atol=0.0175)
    assert counts[1] == 0


def test_multinomial_without_replacement_draws_distinct_categories_in_proportion():
    weights = tg.tensor([[5.0, 1.0, 0.0, 2.0], [0.0, 1.0, 1.0, 1.0]])
    g = tg.Generator().manual_seed(1)
    first = []
    for _ in range(4000):
        draw = tg.multinomial(weights, 3, generator=g).numpy()
        assert draw.shape == (2, 3)
        assert all(len(set(row)) == 3 for row in draw) and 2 not in draw[0] and 0 not in draw[1]
        first.append(draw[0, 0])
    # The first draw of row 0 follows the weights 5:1:2.
    np.testing.assert_allclose(np.bincount(first, minlength=4) / 4000, [5 / 8, 1 / 8, 0, 2 / 8], atol=0.04)


@pytest.mark.parametrize(
    ("weights", "samples", "replacement", "error", "match"),
    [
        ([1.0, 2.0], 3, False, ValueError, "without replacement"),
        ([1.0, 0.0, 0.0], 2, False, ValueError, "positive weight"),
        ([1.0, -2.0], 1, True, ValueError, "non-negative"),
        ([0.0, 0.0], 1, True, ValueError, "positive sum"),
        ([1.0, 2.0], 0, True, ValueError, "num_samples"),
    ],
)
def test_multinomial_refuses_bad_input(weights, samples, replacement, error, match):
    with pytest.raises(error, match=match):
        tg.multinomial(tg.tensor(weights), samples, replacement)


# ---- datasets and random_split -----------------------------------------------------------------------


def squares(n=10):
    x = tg.arange(n, dtype=tg.float32).reshape(n, 1)
    return TensorDataset(x, x * x)


def test_tensor_dataset_indexes_every_tensor_and_checks_first_dimensions():
    data = squares()
    assert len(data) == 10
    x, y = data[3]
    assert x.tolist() == [3.0] and y.tolist() == [9.0]
    with pytest.raises(ValueError, match=r"Size mismatch.*\[3, 4\]"):
        TensorDataset(tg.zeros(3, 2), tg.zeros(4))
    with pytest.raises(TypeError, match="not a Tensor"):
        TensorDataset(np.zeros(3))


def test_adding_datasets_concatenates_them():
    both = squares(3) + squares(4)
    assert isinstance(both, ConcatDataset) and len(both) == 7
    assert [both[i][0].item() for i in range(7)] == [0, 1, 2, 0, 1, 2, 3]
    assert both[-1][0].item() == 3
    with pytest.raises(IndexError, match="out of range"):
        both[7]


def test_a_plain_dataset_subclass_must_define_getitem():
    with pytest.raises(NotImplementedError, match="__getitem__"):
        Dataset()[0]


def test_random_split_by_counts_is_a_reproducible_partition():
    data = squares(10)
    parts = random_split(data, [3, 7], generator=tg.Generator().manual_seed(42))
    again = random_split(data, [3, 7], generator=tg.Generator().manual_seed(42))
    assert [len(p) for p in parts] == [3, 7] and all(isinstance(p, Subset) for p in parts)
    assert sorted(parts[0].indices + parts[1].indices) == list(range(10))
    assert parts[0].indices == again[0].indices
    assert parts[1][0][0].item() == parts[1].indices[0]
    other = random_split(data, [3, 7], generator=tg.Generator().manual_seed(43))
    assert other[0].indices != parts[0].indices


def test_random_split_by_fractions_gives_the_remainder_round_robin():
    parts = random_split(squares(10), [0.33, 0.33, 0.34])
    assert [len(p) for p in parts] == [4, 3, 3]  # floors 3, 3, 3; the one left goes to the first
    with pytest.warns(UserWarning, match="index 1 is 0"):
        random_split(squares(3), [0.9, 0.1])  # sizes 2 + 1 left over, 0


def test_random_split_without_a_generator_follows_manual_seed():
    tg.manual_seed(7)
    first = random_split(squares(10), [5, 5])[0].indices
    tg.manual_seed(7)
    assert random_split(squares(10), [5, 5])[0].indices == first


def test_random_split_refuses_lengths_that_do_not_fit():
    with pytest.raises(ValueError, match="add up to 11"):
        random_split(squares(10), [5, 6])
    with pytest.raises(ValueError, match="fractions must add up to 1"):
        random_split(squares(10), [0.5, 0.2])


# ---- collation ---------------------------------------------------------------------------------------------


def test_default_collate_follows_pytorch_for_each_kind_of_sample():
    Point = collections.namedtuple("Point", ["x", "y"])
    batch = [
        {
            "t": tg.ones(2) * i,
            "f": 0.5 * i,
            "i": i,
            "b": i % 2 == 0,
            "a": np.full(3, i, dtype=np.int32),
            "s": f"s{i}",
            "pair": (i, [float(i), tg.zeros(1)]),
            "p": Point(i, 2.0),
        }
        for i in range(3)
    ]
    out = default_collate(batch)
    assert set(out) == set(batch[0])
    assert out["t"].shape == (3, 2) and out["t"].numpy()[:, 0].tolist() == [0, 1, 2]
    assert out["f"].dtype == np.float64 and out["f"].tolist() == [0.0, 0.5, 1.0]
    assert out["i"].dtype == np.int64 and out["b"].dtype == np.bool_
    assert out["a"].dtype == np.int32 and out["a"].shape == (3, 3)
    assert out["s"] == ["s0", "s1", "s2"]
    assert isinstance(out["pair"], list) and out["pair"][0].tolist() == [0, 1, 2]  # tuples become lists
    assert out["pair"][1][0].dtype == np.float64 and out["pair"][1][1].shape == (3, 1)
    assert isinstance(out["p"], Point) and out["p"].y.tolist() == [2.0, 2.0, 2.0]
    assert default_collate([np.float32(1.5), np.float32(2.0)]).dtype == np.float32


def test_default_collate_keeps_the_graph_of_tensors_that_require_grad():
    w = tg.ones(2, requires_grad=True)
    stacked = default_collate([w * 2, w * 3])
    stacked.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [5.0, 5.0])


@pytest.mark.parametrize(
    ("batch", "error", "match"),
    [
        ([tg.zeros(3), tg.zeros(4)], RuntimeError, r"equal size.*\(3,\) at entry 0 and \(4,\) at entry 1"),
        ([[1, 2], [1]], RuntimeError, "equal size"),
        ([object(), object()], TypeError, "found object"),
        ([np.array(["a"]), np.array(["b"])], TypeError, "dtype <U1"),
        ([{"a": 1}, {"b": 2}], KeyError, "sample 1.*'a'"),
    ],
)
def test_default_collate_refuses_what_it_cannot_batch(batch, error, match):
    with pytest.raises(error, match=match):
        default_collate(batch)


# ---- DataLoader --------------------------------------------------------------------------------------------


def labels(loader):
    return [batch[1].reshape(-1).tolist() for batch in loader]


def order(loader):
    """The labels of one epoch, batches joined."""
    return [label for batch in labels(loader) for label in batch]


def test_batches_come_in_order_with_a_smaller_last_one_unless_dropped():
    data = TensorDataset(tg.arange(10), tg.arange(10))
    loader = DataLoader(data, batch_size=4)
    assert len(loader) == 3 and labels(loader) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    dropped = DataLoader(data, batch_size=4, drop_last=True)
    assert len(dropped) == 2 and labels(dropped) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    x, y = next(iter(loader))
    assert x.shape == (4,) and y.dtype == np.int64


def test_shuffle_gives_a_new_permutation_each_epoch_reproducible_with_a_generator():
    data = TensorDataset(tg.arange(12), tg.arange(12))
    loader = DataLoader(data, batch_size=5, shuffle=True, generator=tg.Generator().manual_seed(3))
    epochs = [order(loader) for _ in range(3)]
    assert all(sorted(e) == list(range(12)) for e in epochs)
    assert epochs[0] != epochs[1] and epochs[0] != list(range(12))
    again = DataLoader(data, batch_size=5, shuffle=True, generator=tg.Generator().manual_seed(3))
    assert order(again) == epochs[0]
    tg.manual_seed(5)
    unseeded = order(DataLoader(data, batch_size=5, shuffle=True))
    tg.manual_seed(5)
    assert order(DataLoader(data, batch_size=5, shuffle=True)) == unseeded


def test_collate_fn_and_batch_size_none():
    data = [(np.arange(i + 1, dtype=np.float64), i) for i in range(4)]
    loader = DataLoader(data, batch_size=2, collate_fn=lambda batch: [len(x) for x, _ in batch])
    assert list(loader) == [[1, 2], [3, 4]]
    single = list(DataLoader(data, batch_size=None))
    assert len(single) == 4 and isinstance(single[2][0], tg.Tensor) and single[2][0].dtype == np.float64
    assert single[2][1] == 2  # numbers stay numbers without batching, as in PyTorch


def test_samplers_and_batch_samplers():
    data = TensorDataset(tg.arange(6), tg.arange(6))
    reverse = list(range(5, -1, -1))
    assert labels(DataLoader(data, batch_size=4, sampler=reverse)) == [[5, 4, 3, 2], [1, 0]]
    assert labels(DataLoader(data, batch_sampler=[[0, 5], [2]])) == [[0, 5], [2]]
    batches = BatchSampler(SequentialSampler(data), 4, drop_last=False)
    assert list(batches) == [[0, 1, 2, 3], [4, 5]] and len(batches) == 2
    g = tg.Generator().manual_seed(0)
    with_replacement = list(RandomSampler(data, replacement=True, num_samples=50, generator=g))
    assert len(with_replacement) == 50 and set(with_replacement) <= set(range(6))
    assert len(set(with_replacement)) < 50
    more = list(RandomSampler(data, num_samples=9, generator=g))
    assert sorted(more[:6]) == list(range(6)) and len(more) == 9
    assert sorted(SubsetRandomSampler([1, 3, 5], generator=g)) == [1, 3, 5]
    weighted = list(WeightedRandomSampler([0.0, 1.0, 0.0, 1.0], 20, generator=g))
    assert set(weighted) == {1, 3}


@pytest.mark.parametrize(
    ("options", "match"),
    [
        (dict(sampler=[0, 1], shuffle=True), "mutually exclusive with shuffle"),
        (dict(batch_sampler=[[0]], batch_size=2), "batch_sampler option is mutually exclusive"),
        (dict(batch_size=None, drop_last=True), "batch_size=None"),
        (dict(batch_size=0), "batch_size should be a positive integer"),
        (dict(num_workers=-1), "num_workers"),
        (dict(worker_init_fn=lambda i: None), "worker_init_fn"),
    ],
)
def test_contradictory_options_are_refused(options, match):
    with pytest.raises(ValueError, match=match):
        DataLoader(squares(4), **options)


def test_num_workers_load_in_process_with_the_same_batches():
    data = squares(9)
    ordered = [b[1].tolist() for b in DataLoader(data, batch_size=4, num_workers=0)]
    assert [b[1].tolist() for b in DataLoader(data, batch_size=4, num_workers=3, pin_memory=True)] == ordered


class Stream(IterableDataset):
    def __init__(self, n, sized=True):
        self.n, self.sized = n, sized

    def __iter__(self):
        return iter(range(self.n))

    def __len__(self):
        if not self.sized:
            raise TypeError("no length")
        return self.n


def test_iterable_datasets_are_batched_in_stream_order():
    assert [b.tolist() for b in DataLoader(Stream(7), batch_size=3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert len(DataLoader(Stream(7), batch_size=3)) == 3
    assert len(DataLoader(Stream(7), batch_size=3, drop_last=True)) == 2
    assert [b.tolist() for b in DataLoader(Stream(3) + Stream(2), batch_size=2)] == [[0, 1], [2, 0], [1]]
    with pytest.raises(ValueError, match="shuffle"):
        DataLoader(Stream(3), shuffle=True)
    with pytest.raises(ValueError, match="sampler"):
        DataLoader(Stream(3), sampler=[0])


def test_a_model_trains_on_a_shuffled_dataloader():
    tg.manual_seed(0)
    x = tg.randn(64, 3)
    y = x @ tg.tensor([[1.0], [-1.0], [0.5]])
    model = nn.Linear(3, 1)
    opt = optim.SGD(model.parameters(), lr=0.1)
    train, valid = random_split(TensorDataset(x, y), [0.75, 0.25], generator=tg.Generator().manual_seed(0))
    loader = DataLoader(train, batch_size=8, shuffle=True)

    def valid_loss():
        with tg.no_grad():
            return sum(((model(a) - b) ** 2).mean().item() for a, b in DataLoader(valid, batch_size=16))

    before = valid_loss()
    for _ in range(10):
        for a, b in loader:
            opt.zero_grad()
            ((model(a) - b) ** 2).mean().backward()
            opt.step()
    assert valid_loss() < 0.01 * before


def test_no_warnings_on_the_common_paths():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        list(DataLoader(squares(5), batch_size=2, shuffle=True))
        random_split(squares(10), [0.5, 0.5])


def test_gpu_generators_draw_on_their_gpu_and_refuse_a_cpu_generator(monkeypatch):
    install(monkeypatch, device_count=2)  # CuPy stand-in, strict where CuPy is
    g = tg.Generator(device="cuda:1").manual_seed(3)
    first = tg.randn(4, device="cuda:1", generator=g)
    assert first.device == "cuda:1"
    g.manual_seed(3)
    np.testing.assert_array_equal(tg.randn(4, device="cuda:1", generator=g).numpy(), first.numpy())
    with pytest.raises(RuntimeError, match="expected a 'cuda' device type for generator but found 'cpu'"):
        tg.randn(2, device="cuda", generator=tg.Generator())
    with pytest.raises(RuntimeError, match="CUDA generator"):
        g.get_state()
    assert sorted(tg.randperm(6, device="cuda").tolist()) == list(range(6))
    data = TensorDataset(tg.randn(5, 2, device="cuda"), tg.arange(5, device="cuda"))
    batches = list(DataLoader(data, batch_size=2, shuffle=True, generator=tg.Generator().manual_seed(0)))
    assert [b[0].device for b in batches] == ["cuda:0"] * 3
    assert sorted(v for b in batches for v in b[1].tolist()) == list(range(5))
