"""The placement rule as Label Studio sees it: each Labels region's `meta` says how its quote was
found, /metrics counts the spans by that, and a long text split into parts follows the same rule
(an entity in the overlap of two parts, or repeated next to a cut, is placed once)."""

from __future__ import annotations

import random
from typing import Any

from llm_backend.core.chunks import Chunk, Found, merge_found
from testkit.gazetteer import Gazetteer
from testkit.llm_server import FakeLLMServer, Reply

LABELS = '<Label value="Person"/><Label value="Organization"/><Label value="Location"/>'
NER_CONFIG = f'<View><Text name="text" value="$text"/><Labels name="ner" toName="text">{LABELS}</Labels></View>'


def _regions(client: Any, text: str) -> list[dict[str, Any]]:
    body = {"label_config": NER_CONFIG, "tasks": [{"id": 1, "data": {"text": text}}]}
    [result] = client.post("/predict", json=body).get_json()["results"]
    assert "result" in result, result
    for region in result["result"]:
        value = region["value"]
        assert text[value["start"] : value["end"]] == value["text"]
    return list(result["result"])


def test_each_region_says_how_its_quote_was_found_and_metrics_count_them(make_client: Any, llm: FakeLLMServer
                                                                          ) -> None:
    text = "Bank of America opened in America. Jonathan Whitaker met ACME Corp in New York."
    llm.set_default(Reply(json={"ner": [
        {"text": "America", "label": "Location"},  # listed before the longer name holding it
        {"text": "Bank of America", "label": "Organization"},
        {"text": "Jonathon Whitaker", "label": "Person"},  # a typo: fuzzy
        {"text": "Acme Corp", "label": "Organization"},  # case-insensitive
        {"text": "New  York", "label": "Location"},  # normalised
        {"text": "Microsoft", "label": "Organization"},  # nowhere: dropped
    ]}))
    client = make_client()
    regions = _regions(client, text)
    got = {region["value"]["text"]: region["meta"] for region in regions}
    assert set(got) == {"America", "Bank of America", "Jonathan Whitaker", "ACME Corp", "New York"}
    assert [r["value"]["start"] for r in regions if r["value"]["text"] == "America"] == [26]
    assert got["Bank of America"] == {"alignment": "exact", "alignment_score": 1.0}
    assert got["ACME Corp"] == {"alignment": "case_insensitive", "alignment_score": 1.0}
    assert got["New York"] == {"alignment": "normalised", "alignment_score": 1.0}
    assert got["Jonathan Whitaker"]["alignment"] == "fuzzy" and 0.85 <= got["Jonathan Whitaker"]["alignment_score"] < 1
    metrics = client.get("/metrics").get_data(as_text=True)
    for kind, count in (("exact", 2), ("case_insensitive", 1), ("normalised", 1), ("fuzzy", 1)):
        assert f'llm_backend_aligned_spans_total{{kind="{kind}"}} {count}.0' in metrics
    assert 'llm_backend_dropped_total{reason="unaligned_entity"} 1.0' in metrics


def test_spans_of_different_labels_from_two_parts_share_no_place_but_may_nest() -> None:
    parts = [Chunk(0, 100, 0), Chunk(80, 200, 100)]
    found = [
        Found(85, 90, "Location", "ner", 0),  # one mention, read by both parts under two labels: once
        Found(85, 90, "Organization", "ner", 1, score=0.9),
        Found(120, 135, "Organization", "ner", 1),  # "Bank of America" and, nested, "America"
        Found(128, 135, "Location", "ner", 0),
        Found(92, 99, "Person", "ner", 0),  # crossing spans of two labels: the better one stays
        Found(95, 104, "Organization", "ner", 1, score=0.8),
    ]
    merged = merge_found(found, parts, 200)
    kept = [(found[i].start, found[i].end, found[i].label) for i in merged.kept]
    assert kept == [(85, 90, "Location"), (92, 99, "Person"), (120, 135, "Organization"), (128, 135, "Location")]
    assert merged.conflicts == 2


NAMES = [("Paris", "Location"), ("New York", "Location"), ("York", "Location"), ("Bank of America", "Organization"),
         ("America", "Location"), ("Anna Berg", "Person"), ("横浜市", "Location"), ("横浜", "Location")]
FILLER = ["the", "report", "said", "that", "during", "meeting", "with", "officials", "annual", "Yorkshire", "and"]


def _document(seed: int, sentences: int) -> str:
    r = random.Random(seed)
    out = []
    for _ in range(sentences):
        words = [r.choice(FILLER) for _ in range(r.randint(2, 8))]
        for _ in range(r.randint(1, 3)):  # names, often repeated next to each other
            name = r.choice(NAMES)[0]
            words.insert(r.randrange(len(words) + 1), name if name.isascii() else f"{name}に")
        out.append(" ".join(words).capitalize() + r.choice([". ", ".\n", "! "]))
    return "".join(out)


def test_a_long_text_in_parts_places_every_mention_once_by_the_same_rule(make_client: Any, llm: FakeLLMServer
                                                                          ) -> None:
    text = _document(seed=3, sentences=900)
    gazetteer = Gazetteer("ner", NAMES, cut_edges=True)  # quotes every mention a part shows, in order
    truth = sorted(gazetteer.occurrences(text))
    llm.context_tokens = 2048
    llm.set_gazetteer(gazetteer)
    client = make_client(llm_context_tokens=2048)
    regions = _regions(client, text)
    assert llm.calls > 4  # the text was asked in several overlapping parts
    placed = sorted((r["value"]["start"], r["value"]["end"], r["value"]["labels"][0]) for r in regions)
    assert placed == truth  # no mention twice, none inside "New York" / "Bank of America" / 横浜市
    assert all(region["meta"]["alignment"] == "exact" for region in regions)
