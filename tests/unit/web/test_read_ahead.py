"""How the read-ahead worker frames a request from its first bytes (runner.web.read_ahead)."""

import pytest

from runner.web.read_ahead import BODY_LIMIT, Framing, complete, framing, streaming_slots


def test_a_head_is_incomplete_until_its_blank_line():
    assert framing(b"GET / HTTP/1.1\r\nHost: x\r\n") is None
    assert framing(b"G") is None
    assert framing(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == Framing(27, 0)


def test_a_small_body_is_read_ahead_whole():
    head = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"
    assert complete(head + b"abcd") is None
    assert complete(head + b"abcde") == Framing(len(head), 5)
    # A pipelined request behind it is left for later; this one is complete.
    assert complete(head + b"abcdeGET") == Framing(len(head), 5)


@pytest.mark.parametrize(
    "header",
    [
        b"Content-Length: %d" % (BODY_LIMIT + 1),
        b"Transfer-Encoding: chunked",
        b"transfer-encoding:  gzip, chunked",
        b"Expect: 100-continue",
        b"Content-Length: 12abc",  # Gunicorn's parser answers these with its 400
        b"Content-Length: -1",
    ],
)
def test_large_chunked_expecting_or_malformed_bodies_stream(header):
    data = b"POST / HTTP/1.1\r\n" + header + b"\r\n\r\n"
    found = complete(data)
    assert found is not None and found.streams


def test_two_lengths_stream_to_gunicorns_refusal():
    for lengths in (b"1", b"0"):
        data = b"POST / HTTP/1.1\r\nContent-Length: %s\r\nContent-Length: 2\r\n\r\n" % lengths
        assert framing(data).streams


def test_header_names_are_case_insensitive():
    assert framing(b"POST / HTTP/1.1\r\ncontent-LENGTH: 3\r\n\r\n").body_length == 3


def test_one_thread_is_always_left_for_pages():
    assert [streaming_slots(n) for n in (1, 2, 3, 8)] == [1, 1, 2, 7]
