"""Smoke test of examples/online_learning.py with tiny settings (the full run's table is in docs)."""

from test_examples import run_example


def test_online_learning_example_prints_its_table_for_every_method():
    result = run_example("online_learning.py", "--quick")
    for method in ("full BPTT", "TBPTT(2)", "RTRL", "UORO", "forward gradient"):
        assert method in result.stdout
    rtrl = next(line for line in result.stdout.splitlines() if line.strip().startswith("RTRL"))
    assert rtrl.split()[1] == "1.000"  # RTRL's gradient is the exact one: cosine 1
