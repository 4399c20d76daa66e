"""What the fuzz tests (test_fuzz_*.py) generate: hypothesis settings and strategies for hostile input.

Arbitrary unicode, strings far past every length limit, control and bidi
characters, path separators, numbers at and past the int32 bounds, malformed
page tokens. Example counts are bounded so each fuzz module runs in about a
minute. The server under fuzz and the namespace holding ``TARGET`` are
fixtures in ``conftest.py``.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

TARGET = "fuzz-target"
EXAMPLES = 100
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # no .hypothesis/ directory in the work tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
HOSTILE_CHARS = ["a", "A", "-", ".", "/", "%", "é", "\x00", "\n", "\u202e", "\ufeff", "😀", "\\", "..", "%2F", " "]


def long_strings(chars: list[str], low: int, high: int) -> st.SearchStrategy[str]:
    return st.builds(lambda c, n: c * n, st.sampled_from(chars), st.integers(low, high))


def identifiers() -> st.SearchStrategy[str]:
    return st.one_of(
        st.just(""),
        st.just(TARGET),
        st.text(max_size=80),
        st.text(alphabet="abcz09-.", min_size=1, max_size=300),
        long_strings(HOSTILE_CHARS, 60, 70_000),
        st.lists(st.sampled_from(HOSTILE_CHARS), max_size=40).map("".join),
    )


int32s = st.one_of(
    st.integers(INT32_MIN, INT32_MAX), st.sampled_from([0, -1, 1, 1000, 1001, INT32_MAX, INT32_MIN, INT32_MAX - 1])
)
page_tokens = st.one_of(
    st.just(""),
    st.text(max_size=100),
    st.binary(max_size=200).map(lambda b: b.hex()),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_-", max_size=400),
    long_strings(["A", "=", "%", "é"], 1000, 100_000),
)
