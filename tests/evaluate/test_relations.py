import numpy as np
import pytest

from matseg.evaluate.relations import RelationsError, parse_relations, read_relations, similarity_matrix

KEYS = ["1", "2", "3", "4"]


def test_reference_syntax_and_weights():
    pairs, warnings = parse_relations("[1,2,3]\n(3,4)", KEYS)
    assert pairs[("1", "2")] == pairs[("2", "1")] == pairs[("1", "3")] == pairs[("2", "3")] == 0.6
    assert pairs[("3", "4")] == pairs[("4", "3")] == 0.3
    assert ("1", "4") not in pairs and not warnings
    sim = similarity_matrix(KEYS, pairs)
    assert np.array_equal(sim, sim.T) and np.all(np.diag(sim) == 1.0)
    assert sim[0, 3] == 0.0 and sim[2, 3] == 0.3 and sim[0, 1] == 0.6


@pytest.mark.parametrize(
    "text",
    ["[1, 2]\n", " [ 1 ,2 ] \r\n\r\n( 3, 4 )\n\n", "\n\n[1,2]\n(3,4)\n\n\n", "# groups\n[1,2]\n   \n(3,4)"],
)
def test_tolerant_whitespace_blank_lines_and_trailing_newline(text):
    pairs, _ = parse_relations(text, KEYS)
    assert pairs[("1", "2")] == 0.6
    if "3" in text:
        assert pairs[("3", "4")] == 0.3


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("[1,2]\n[1,5]", 2, "'5' not in the image's data"),
        ("[1,2]\n\n[1,2)", 3, "must start with '[' and end with ']'"),
        ("[1,2]\n(1,2]", 2, "must start with '(' and end with ')'"),
        ("1,2", 1, "no [..] or (..) group"),
        ("[1,2](3,4)", 1, "both"),
        ("[1,2][3,4]", 1, "must start with"),
        ("x[1,2]", 1, "must start with"),
        ("[1,,2]", 1, "empty material key"),
    ],
)
def test_errors_name_file_and_line(text, line, message):
    with pytest.raises(RelationsError) as info:
        parse_relations(text, KEYS, source="bench/data/img/group_relations.txt")
    assert f"bench/data/img/group_relations.txt:{line}:" in str(info.value)
    assert message in str(info.value)


def test_odd_but_accepted_lines_warn():
    pairs, warnings = parse_relations("[1]\n[1,2]\n(2,1)", KEYS)
    assert pairs[("1", "2")] == 0.3  # the later line wins, as in the reference
    assert any("fewer than two" in w for w in warnings) and any("later line wins" in w for w in warnings)


def test_custom_weights_and_file_reading(tmp_path):
    path = tmp_path / "group_relations.txt"
    path.write_bytes("\ufeff[1,2]\n".encode("utf-8"))  # BOM from a Windows editor
    pairs, _ = read_relations(path, KEYS, weights={"[": 0.8})
    assert pairs[("1", "2")] == 0.8
    with pytest.raises(RelationsError, match="cannot read"):
        read_relations(tmp_path / "missing.txt", KEYS)
