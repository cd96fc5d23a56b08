"""The schedules added after the article, against their published formulas."""

import numpy as np
import pytest

from lrtune.schedules import make_schedule, piecewise


def test_piecewise_holds_each_value_from_its_boundary_to_the_next():
    s = piecewise(boundaries=[3, 5], values=[0.1, 0.02, 0.004])
    expected = {0: 0.1, 2: 0.1, 3: 0.02, 4: 0.02, 5: 0.004, 40: 0.004}
    assert {t: float(s(t)) for t in expected} == expected


def test_piecewise_is_constant_within_an_epoch():
    s = piecewise(boundaries=[1], values=[0.1, 0.01])
    lr = s.at_step(np.arange(8), steps_per_epoch=4)
    assert list(lr) == [0.1] * 4 + [0.01] * 4


def test_piecewise_takes_no_lr():
    with pytest.raises(
        ValueError, match=r"Schedule 'piecewise' takes \(boundaries, values\); got unexpected lr"
    ):
        make_schedule("piecewise", lr=0.1, boundaries=[1], values=[0.1, 0.01])


@pytest.mark.parametrize(
    ("boundaries", "values", "message"),
    [
        (
            [2, 2],
            [0.1, 0.1, 0.1],
            r"`boundaries` must be > 0 and strictly increasing. Received: boundaries=\[2.0, 2.0\]",
        ),
        ([0, 2], [0.1, 0.1, 0.1], r"`boundaries` must be > 0"),
        (
            [2],
            [0.1],
            r"`values` must have one more entry than `boundaries`. Received: 1 values for 1 boundaries",
        ),
        ([2], [0.1, 0.0], r"Argument `values` must be > 0. Received: values=0.0"),
        ([2], "0.1", r"`values` must be a list of numbers. Received: values='0.1'"),
        ([2], [0.1, "x"], r"`values` must be a list of finite numbers"),
    ],
)
def test_piecewise_rejects_bad_lists(boundaries, values, message):
    with pytest.raises(ValueError, match=message):
        piecewise(boundaries, values)


def test_piecewise_config_columns_fit_the_metrics_schema():
    import pyarrow as pa

    from lrtune.results import CONFIG_COLUMNS, config_columns

    row = config_columns(
        {"optimizer": "sgd", "schedule": "piecewise", "boundaries": [2, 4], "values": [0.1, 0.01, 0.001]}
    )
    assert row["config.lr"] is None  # the schedule starts at values[0], not at the optimizer's default lr
    table = pa.Table.from_pylist(
        [row], schema=pa.schema([(f"config.{k}", t) for k, t in CONFIG_COLUMNS.items()])
    )
    assert table["config.boundaries"].to_pylist() == [[2.0, 4.0]]
