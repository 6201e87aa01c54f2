"""Anthropic's stop_sequences applied by the gateway (api/messages/stops.py): the first sequence found cuts the
text, whole or streamed, and is reported; a tail that may begin one is held until it is settled."""

from __future__ import annotations

import pytest

from qwen_gateway.api.messages.stops import StopScanner, cut, first_stop, sequences


@pytest.mark.parametrize("value, expected", [(["END", "", 3, "STOP"], ("END", "STOP")), ("END", ()), (None, ())])
def test_sequences_are_the_non_empty_strings_of_the_list(value, expected):
    assert sequences({"stop_sequences": value}) == expected


def test_the_sequence_found_earliest_wins():
    assert first_stop("abc STOP def END", ("END", "STOP")) == (4, "STOP")


def test_of_sequences_starting_at_the_same_place_the_longest_wins():
    assert first_stop("say ENDING now", ("END", "ENDING")) == (4, "ENDING")


def test_no_sequence_found():
    assert first_stop("nothing here", ("END",)) is None


def test_cut_keeps_the_text_before_the_sequence():
    assert cut("Hello END world", ("END",)) == ("Hello ", "END")
    assert cut("Hello world", ("END",)) == ("Hello world", None)
    assert cut("Hello END", ()) == ("Hello END", None)


def stream(scanner: StopScanner, deltas: list[str]) -> list[str]:
    return [scanner.feed(d) for d in deltas]


def test_a_sequence_split_across_deltas_is_found_and_nothing_after_it_goes_out():
    s = StopScanner(("STOP",))
    assert stream(s, ["Hello ST", "OP and more", "even more"]) == ["Hello ", "", ""]
    assert s.matched == "STOP" and s.flush() == ""


def test_a_held_tail_that_was_no_sequence_goes_out_with_the_next_delta():
    s = StopScanner(("STOP",))
    assert stream(s, ["Hello ST", "ART"]) == ["Hello ", "START"]
    assert s.matched is None


def test_a_held_tail_goes_out_at_the_end():
    s = StopScanner(("STOP",))
    assert s.feed("last ST") == "last "
    assert s.flush() == "ST" and s.flush() == ""


def test_the_held_tail_is_the_longest_that_may_begin_a_sequence():
    s = StopScanner(("abc", "xbcd"))
    assert s.feed("--xbc") == "--"  # "xbc" may begin "xbcd"
    assert s.feed("y") == "xbcy"
    assert s.feed("x") == ""  # "x" may begin "xbcd" again


def test_a_sequence_inside_one_delta_cuts_it():
    s = StopScanner(("\n\nHuman:",))
    assert s.feed("answer\n\nHuman: more") == "answer" and s.matched == "\n\nHuman:"
