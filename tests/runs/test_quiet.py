"""Quieter run output (no Docker): banners once with a count, other lines untouched."""

from __future__ import annotations

import pytest

from ringfleet.runs.quiet import HOLD_SECONDS, BannerDedupe, banner_key, rank_env

ONEDNN = (
    "2026-12-02 10:01:02.123456: I tensorflow/core/util/port.cc:113] oneDNN custom "
    "operations are on. You may see slightly different numerical results"
)
SLOW = (
    "WARNING:tensorflow:Callback method `on_train_batch_end` is slow compared to the "
    "batch time (batch time: 0.0012s vs `on_train_batch_end` time: 0.0045s)."
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def feed_all(dedupe: BannerDedupe, text: str, ranks: int) -> list[str]:
    out: list[str] = []
    for rank in range(ranks):
        # Each rank's own timestamp and timing numbers differ; the banner is the same.
        line = text.replace("0.0045", f"0.00{rank}5") if rank else text
        out += dedupe.feed(rank, f"[{rank} n]", line)
    return out


@pytest.mark.parametrize("text", [ONEDNN, SLOW])
def test_banner_on_every_rank_is_printed_once_with_count(text: str) -> None:
    assert feed_all(BannerDedupe(4), text, 4) == [f"[4 ranks] {text} (same on 4 ranks)"]


def test_ordinary_line_passes_straight_through() -> None:
    assert BannerDedupe(4).feed(1, "[1 n]", "rank 1/4: trained 359 samples") == [
        "[1 n] rank 1/4: trained 359 samples"
    ]


def test_banner_seen_on_some_ranks_is_printed_after_the_hold() -> None:
    clock = Clock()
    dedupe = BannerDedupe(4, clock)
    dedupe.feed(0, "[0 n]", ONEDNN)
    dedupe.feed(2, "[2 n]", ONEDNN)
    clock.now = HOLD_SECONDS
    assert dedupe.flush() == [f"[2 ranks] {ONEDNN} (same on 2 ranks)"]


def test_banner_held_is_not_printed_before_the_hold() -> None:
    dedupe = BannerDedupe(4, Clock())
    dedupe.feed(0, "[0 n]", ONEDNN)
    assert dedupe.flush() == []


def test_banner_of_one_rank_keeps_its_rank_prefix() -> None:
    dedupe = BannerDedupe(4, Clock())
    dedupe.feed(3, "[3 n]", SLOW)
    assert dedupe.flush(everything=True) == [f"[3 n] {SLOW}"]


def test_straggler_of_a_printed_banner_is_not_printed_again() -> None:
    dedupe = BannerDedupe(2)
    feed_all(dedupe, SLOW, 2)
    assert dedupe.feed(1, "[1 n]", SLOW) == []


def test_non_banner_lines_have_no_key() -> None:
    assert banner_key("Epoch 3/30") is None


@pytest.mark.parametrize(
    ("job_env", "verbose", "expected"),
    [
        ({}, False, {"TF_CPP_MIN_LOG_LEVEL": "1"}),
        ({"TF_CPP_MIN_LOG_LEVEL": "0"}, False, {}),
        ({}, True, {}),
    ],
)
def test_rank_env_quiets_tensorflow_unless_job_or_verbose(job_env, verbose, expected) -> None:
    assert rank_env(job_env, verbose) == expected
