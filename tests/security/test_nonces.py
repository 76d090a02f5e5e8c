"""Nonces cut from pages of OS randomness: never handed out twice, not across threads, and not
by a forked child (which must not reuse its parent's unused bytes)."""
from __future__ import annotations

import os
import threading

from appliance.security.nonces import RandomPool

NONCE = 12


def test_nonces_are_never_repeated_across_pages_and_threads():
    pool = RandomPool(page_bytes=NONCE * 7 + 5)  # pages that do not divide evenly
    taken: list[bytes] = []

    def draw() -> None:
        mine = [pool.take(NONCE) for _ in range(2_000)]
        taken.extend(mine)

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(taken) == 8_000 and all(len(nonce) == NONCE for nonce in taken)
    assert len(set(taken)) == len(taken)


def test_more_than_a_page_comes_straight_from_the_os():
    pool = RandomPool(page_bytes=16)
    assert len(pool.take(40)) == 40


def test_a_forked_child_does_not_reuse_the_parents_unused_bytes():
    pool = RandomPool()
    pool.take(NONCE)  # the page is filled: most of it is unused
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # the child: report its next nonce and leave at once
        os.close(reader)
        os.write(writer, pool.take(NONCE))
        os._exit(0)
    os.close(writer)
    from_child = os.read(reader, NONCE)
    os.close(reader)
    os.waitpid(child, 0)
    assert len(from_child) == NONCE
    assert from_child != pool.take(NONCE)  # the parent's next bytes went to nobody else
