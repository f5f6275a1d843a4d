"""The history checker catches each kind of violation, and passes what a correct broker may do
(lost unconfirmed messages, flagged redeliveries, duplicates of unconfirmed republishes)."""

from __future__ import annotations

import pytest
from checker import Delivery, Publish, check


def clean_history() -> tuple[list[Publish], list[Delivery]]:
    pubs = [Publish("p1", i) for i in range(1, 6)] + [Publish("p2", i) for i in range(1, 4)]
    pubs += [Publish("p1", 6, "unknown"), Publish("p1", 7, "nacked")]  # may be lost
    dels = [Delivery("p1", 1), Delivery("p2", 1), Delivery("p1", 2), Delivery("p2", 2),
            Delivery("p1", 3), Delivery("p1", 4), Delivery("p2", 3), Delivery("p1", 5)]
    return pubs, dels


def test_a_correct_history_passes() -> None:
    pubs, dels = clean_history()
    result = check(pubs, dels)
    assert result.ok, result.summary()
    assert (result.published, result.confirmed, result.consumed) == (10, 8, 8)
    assert result.summary().endswith(": ok")


def test_lost_confirmed_message() -> None:
    pubs, dels = clean_history()
    result = check(pubs, [d for d in dels if d.id != ("p2", 2)])
    assert not result.ok and result.lost == [("p2", 2)]
    assert "1 lost" in result.summary()
    # an unconfirmed message may be lost; confirmed by its republish it may not
    pubs += [Publish("p3", 1, "unknown"), Publish("p3", 1, "confirmed", attempt=2)]
    assert check(pubs, dels).lost == [("p3", 1)]


def test_phantom_message() -> None:
    pubs, dels = clean_history()
    result = check(pubs, dels + [Delivery("p9", 1)])
    assert result.phantom == [("p9", 1)] and not result.ok


def test_reordered_first_deliveries() -> None:
    pubs, dels = clean_history()
    swapped = list(dels)
    swapped[4], swapped[5] = swapped[5], swapped[4]  # p1: 4 before 3
    result = check(pubs, swapped)
    assert result.reordered == [("", "p1", 4, 3)]
    # the same order in two different queues is fine, and so is a gap
    other = [Delivery("p1", 3, queue="b"), Delivery("p1", 1, queue="a")]
    assert not check([Publish("p1", 1), Publish("p1", 3)], other).reordered
    assert check(pubs, [d for d in dels if d.id != ("p1", 3)]).reordered == []


def test_redelivered_again_later_is_not_a_reorder() -> None:
    pubs, dels = clean_history()
    dels.append(Delivery("p1", 2, redelivered=True))  # requeued after 5: a redelivery
    result = check(pubs, dels)
    assert result.ok and result.duplicates == 1


def test_unexplained_duplicate() -> None:
    pubs, dels = clean_history()
    result = check(pubs, dels + [Delivery("p1", 2)])  # fresh again, published once
    assert result.unexplained == [("p1", 2)] and not result.ok
    # a confirmed message republished anyway does not explain a second fresh delivery
    pubs2 = pubs + [Publish("p1", 2, "confirmed", attempt=2)]
    assert check(pubs2, dels + [Delivery("p1", 2)]).unexplained == [("p1", 2)]


def test_duplicates_explained_by_unconfirmed_republish_or_redelivery() -> None:
    pubs, dels = clean_history()
    pubs += [Publish("p4", 1, "unknown"), Publish("p4", 1, "confirmed", attempt=2)]
    dels += [Delivery("p4", 1), Delivery("p4", 1)]  # both attempts made it
    dels += [Delivery("p2", 3, redelivered=True)]
    result = check(pubs, dels)
    assert result.ok, result.summary()
    assert result.duplicates == 2
    # but two republishes give at most three fresh copies
    assert check(pubs, dels + [Delivery("p4", 1)]).unexplained == [("p4", 1)]


@pytest.mark.parametrize("allow", [False, True])
def test_unflagged_redelivery_of_an_unacked_message(allow: bool) -> None:
    """After a failover the new leader may not know a message was delivered."""
    pubs, dels = clean_history()
    dels[0] = Delivery("p1", 1, acked=False)
    dels.append(Delivery("p1", 1))
    result = check(pubs, dels, allow_unflagged_redelivery=allow)
    assert result.ok is allow
    acked_then_again = clean_history()[1] + [Delivery("p1", 1)]
    assert not check(pubs, acked_then_again, allow_unflagged_redelivery=allow).ok


def test_bad_outcome_is_refused() -> None:
    with pytest.raises(ValueError):
        Publish("p", 1, "maybe")
