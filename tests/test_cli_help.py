"""Every option of every ``python -m bnkernels`` command names its default in
its --help text, and the value named is the one argparse uses."""
import argparse
import re
from unittest import mock

import pytest

from bnkernels.__main__ import main

COMMANDS = ("verify", "darknet-check", "bench", "train")
# a default that needs no words: the option absent means "nothing" or "off"
UNSTATED = (None, False, [], argparse.SUPPRESS)


class _Parsed(Exception):
    pass


def command_parsers():
    """{command: its argparse parser}, as main() builds them (main has no
    parser to return, so parse_args is stopped at its first call)."""
    seen = {}

    def stop(parser, *args, **kwargs):
        seen["parser"] = parser
        raise _Parsed

    with mock.patch.object(argparse.ArgumentParser, "parse_args", stop):
        with pytest.raises(_Parsed):
            main(["verify"])
    commands, = (action for action in seen["parser"]._actions
                 if isinstance(action, argparse._SubParsersAction))
    return commands.choices


PARSERS = command_parsers()


def test_every_command_is_checked():
    assert set(PARSERS) == set(COMMANDS)


def shown_default(help_text):
    """The default a help text names: '... (default: X)', '... (default X)'
    (X up to ')' or a comma or semicolon and a space) or 'X (default) or ...';
    None if it names none."""
    text = " ".join(help_text.split())
    match = (re.search(r"\(default:? (.+?)(?:, |; |\))", text)
             or re.match(r"(\S+) \(default\)", text))
    return match.group(1) if match else None


def as_lists(value):
    """value with its tuples and lists, at any depth, as lists (bench's
    --shapes parses to tuples, its default is lists)."""
    if isinstance(value, (list, tuple)):
        return [as_lists(item) for item in value]
    return value


@pytest.mark.parametrize("command", COMMANDS)
def test_each_option_with_a_default_names_it_in_its_help(command):
    parser = PARSERS[command]
    checked = 0
    for action in parser._actions:
        if not action.option_strings or action.default in UNSTATED:
            continue
        option = action.option_strings[-1]
        assert action.help, f"{command} {option} has no help"
        shown = shown_default(action.help % {"default": action.default})
        assert shown is not None, f"{command} {option}: help names no default: {action.help!r}"
        # the named text, read as the command line would read it, is the
        # default argparse uses (a string default is converted the same way)
        convert = action.type or (lambda text: text)
        expected = (convert(action.default) if isinstance(action.default, str)
                    else action.default)
        assert as_lists(convert(shown)) == as_lists(expected), (command, option, shown,
                                                                action.default)
        checked += 1
    # the commands with options that have defaults: a parser change that
    # hid them from this loop would show here (darknet-check --numerics
    # defaults to None so that the deprecated --flavor can still choose)
    assert checked == {"verify": 0, "darknet-check": 1, "bench": 8, "train": 10}[command]
    assert f"{command} [-h]" in parser.format_usage()


def test_shown_default_reads_each_form():
    assert shown_default("SGD momentum (default 0.9)") == "0.9"
    assert shown_default("the epsilon\n (default: 1e-5)") == "1e-5"
    assert shown_default("buffers (default: 256, well beyond the L3 cache)") == "256"
    assert shown_default("shapes (default: 2x3x4x4,5x6x7x8)") == "2x3x4x4,5x6x7x8"
    assert shown_default("NCHW (default) or NHWC") == "NCHW"
    assert shown_default("write a PNG") is None
