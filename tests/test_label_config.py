from __future__ import annotations

import pytest

from llm_backend.core.config import parse_label_config, taxonomy_paths
from llm_backend.errors import LabelConfigError
from tests.conftest import ALL_CONTROLS_CONFIG, CHOICES_CONFIG, fixture_json


def test_real_setup_body_config_parses() -> None:
    config = parse_label_config(fixture_json("setup.json")["schema"])
    assert [(c.name, c.kind) for c in config.controls] == [
        ("sentiment", "choices"), ("ner", "labels"), ("summary", "textarea"),
    ]
    assert config.objects["text"].data_key == "text"
    assert config.controls[0].multiple is False
    assert [o.value for o in config.controls[1].options] == ["Person", "Organization"]


def test_all_controls() -> None:
    config = parse_label_config(ALL_CONTROLS_CONFIG)
    kinds = {c.name: c.kind for c in config.controls}
    assert kinds == {
        "sentiment": "choices", "topics": "choices", "ner": "labels",
        "summary": "textarea", "quality": "rating", "year": "number",
        "category": "taxonomy",
    }
    topics = config.control("topics")
    assert topics is not None and topics.multiple
    assert [o.result_value for o in topics.options] == ["Sports", "POL", "Tech"]
    sentiment = config.control("sentiment")
    assert sentiment is not None and sentiment.options[0].hint == "the author likes it"
    category = config.control("category")
    assert category is not None
    assert taxonomy_paths(category.options, leafs_only=False) == [
        ("News",), ("News", "World"), ("News", "Local"), ("Opinion",),
    ]
    assert taxonomy_paths(category.options, leafs_only=True) == [("News", "World"), ("News", "Local"), ("Opinion",)]


def test_choices_grouped_in_views_and_lowercase_attributes() -> None:
    config = parse_label_config(
        '<View><Text name="t" value="$body"/><Choices name="c" toname="t">'
        '<View><Choice value="A"/></View><View><Choice value="B"/></View></Choices></View>'
    )
    assert [o.value for o in config.controls[0].options] == ["A", "B"]
    assert config.objects["t"].data_key == "body"


def test_unsupported_controls_are_reported_not_fatal() -> None:
    config = parse_label_config(
        '<View><Image name="img" value="$image"/><PolygonLabels name="box" toName="img"><Label value="Car"/>'
        '</PolygonLabels><Text name="t" value="$text"/><Choices name="c" toName="t"><Choice value="A"/></Choices>'
        '<TextArea name="per" toName="t" perRegion="true"/></View>'
    )
    assert [c.name for c in config.controls] == ["c"]
    skipped = {s.name: s.reason for s in config.skipped}
    assert "not supported" in skipped["box"]
    assert "perRegion" in skipped["per"]


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        ("", "empty"),
        ("<View><Text name='t' value='$t'/>", "not well-formed"),
        ('<!DOCTYPE v [<!ENTITY x "y">]><View><Text name="t" value="&x;"/></View>', "forbidden XML"),
        ('<?xml version="1.0"?><!DOCTYPE v SYSTEM "http://example.invalid/x.dtd"><View/>', "forbidden XML"),
        ('<View><Text name="t" value="$t"/><Choices name="c" toName="nowhere"><Choice value="A"/></Choices></View>',
         "no object tag"),
        ('<View><Text name="t" value="$t"/><Choices name="c" toName="t"><Choice value="A"/></Choices>'
         '<Choices name="c" toName="t"><Choice value="B"/></Choices></View>', "unique"),
        ("<View>" * 100 + "</View>" * 100, "deeper"),
        ('<View><Text name="t" value="$t"/></View>', "no control"),
    ],
    ids=["empty", "malformed", "entity", "external-dtd", "toName-nowhere", "duplicate-name", "deep", "no-controls"],
)
def test_bad_configs_raise_clear_errors(xml: str, message: str) -> None:
    with pytest.raises(LabelConfigError, match=message):
        parse_label_config(xml)


def test_billion_laughs_is_refused_quickly() -> None:
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        + "".join(f'<!ENTITY lol{i} "{"&lol{};".format(i - 1 if i > 1 else "") * 10}">' for i in range(1, 9))
        + ']><View><Text name="t" value="&lol8;"/></View>'
    )
    with pytest.raises(LabelConfigError, match="forbidden XML"):
        parse_label_config(bomb)


def test_choices_config_fingerprint_is_stable() -> None:
    assert parse_label_config(CHOICES_CONFIG).fingerprint == parse_label_config(CHOICES_CONFIG).fingerprint


def test_model_version_ignores_whitespace_and_attribute_order() -> None:
    """Label Studio strips the config's trailing newline; offline `predict` reads the file with it."""
    base = '<View><Text name="text" value="$text"/><Choices name="s" toName="text"><Choice value="A"/></Choices></View>'
    reordered = base.replace('name="s" toName="text"', 'toName="text" name="s"')
    variants = [base + "\n", base.replace("><", ">\n  <"), reordered]
    fingerprints = {parse_label_config(xml).fingerprint for xml in [base, *variants]}
    assert len(fingerprints) == 1
    assert parse_label_config(base.replace('value="A"', 'value="B"')).fingerprint not in fingerprints


def test_what_label_studio_accepts_is_skipped_or_tolerated_not_refused() -> None:
    """Issue 31: a control on an object this backend does not read, a control with nothing to choose from
    and a helper pointing at a control are skipped with their reason; a repeated value is used once."""
    config = parse_label_config(
        '<View><Text name="t" value="$t"/><Audio name="audio" value="$audio"/><PDF name="doc" value="$pdf"/>'
        '<Choices name="c" toName="t"><Choice value="A"/><Choice value="B"/><Choice value="A"/></Choices>'
        '<TextArea name="transcript" toName="audio"/><Choices name="pages" toName="doc"><Choice value="X"/></Choices>'
        '<RectangleLabels name="boxes" toName="t"/><Choices name="empty" toName="t"/>'
        '<Labels name="ner" toName="t"><Label value="P"/></Labels><Filter name="f" toName="ner"/></View>')
    assert [(c.name, [o.value for o in c.options]) for c in config.controls] == [("c", ["A", "B"]), ("ner", ["P"])]
    skipped = {s.name: s.reason for s in config.skipped}
    assert skipped == {
        "transcript": "<Audio> is not read by this backend",
        "pages": "<PDF> is not read by this backend",
        "boxes": "<RectangleLabels> has no <Label> values to choose from",
        "empty": "<Choices> has no <Choice> values to choose from",
        "f": "points at the control ner, not at an object",
    }
    assert config.warnings == ('control "c" lists the value "A" twice; it is used once',)


def test_chat_table_and_list_are_read_as_text_for_whole_object_controls() -> None:
    config = parse_label_config(
        '<View><Chat name="chat" value="$chat"/><Table name="row" value="$row"/><List name="l" value="$items"/>'
        '<Choices name="c" toName="chat"><Choice value="Good"/></Choices><Rating name="r" toName="row"/>'
        '<TextArea name="note" toName="l"/><Labels name="ner" toName="chat"><Label value="P"/></Labels>'
        '<Choices name="per" toName="chat" perRegion="true"><Choice value="X"/></Choices>'
        '<TextArea name="span_note" toName="l" perRegion="true"/></View>')
    # A perRegion control on a Chat is asked about each message (tests/test_objects.py); elsewhere it is skipped.
    assert [(c.name, c.kind, c.per_item) for c in config.controls] == [
        ("c", "choices", ""), ("r", "rating", ""), ("note", "textarea", ""), ("per", "chatmessage", "choices")]
    skipped = {s.name: s.reason for s in config.skipped}
    assert skipped == {"ner": "<Labels> on <chat> is not supported",
                       "span_note": "perRegion controls describe regions; not predicted"}


def test_an_unknown_named_object_is_not_read_rather_than_missing() -> None:
    config = parse_label_config('<View><Text name="t" value="$t"/><Markdown name="md" value="$md"/>'
                                '<Choices name="c" toName="md"><Choice value="A"/></Choices>'
                                '<Choices name="d" toName="t"><Choice value="A"/></Choices></View>')
    assert [c.name for c in config.controls] == ["d"]
    assert config.skipped[0].reason == "<markdown> is not read by this backend"
