"""Reading rr report's HTML as a user's browser shows it: puzzle cards and their cells."""

from __future__ import annotations

from html.parser import HTMLParser

import attrs


@attrs.define
class Figure:
    kind: str  # input, step, label
    caption: str = ""
    cells: list[dict] = attrs.field(factory=list)  # {"pos": int | None, "classes": set, "text": str}


@attrs.define
class Card:
    status: str  # solved or failed
    index: int
    figures: list[Figure] = attrs.field(factory=list)

    def steps(self) -> list[Figure]:
        return [f for f in self.figures if f.kind == "step"]

    def label(self) -> Figure:
        return next(f for f in self.figures if f.kind == "label")


class ReportParser(HTMLParser):
    """Collects the gallery's cards (section.puzzle) with each figure's cells."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: list[Card] = []
        self.images: list[str] = []
        self._cell: dict | None = None
        self._in_caption = False

    def handle_starttag(self, tag, attributes):
        attributes = dict(attributes)
        classes = set((attributes.get("class") or "").split())
        if tag == "img":
            self.images.append(attributes.get("src", ""))
        elif tag == "section" and "puzzle" in classes:
            status = "solved" if "solved" in classes else "failed"
            self.cards.append(Card(status, int(attributes["data-index"])))
        elif tag == "figure" and self.cards:
            self.cards[-1].figures.append(Figure(next(iter(classes))))
        elif tag == "figcaption":
            self._in_caption = True
        elif tag == "td" and "cell" in classes and self.cards and self.cards[-1].figures:
            pos = attributes.get("data-pos")
            self._cell = {"pos": int(pos) if pos is not None else None, "classes": classes, "text": ""}
            self.cards[-1].figures[-1].cells.append(self._cell)

    def handle_endtag(self, tag):
        if tag == "td":
            self._cell = None
        elif tag == "figcaption":
            self._in_caption = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data
        elif self._in_caption and self.cards and self.cards[-1].figures:
            self.cards[-1].figures[-1].caption += data


def parse_report(text: str) -> ReportParser:
    parser = ReportParser()
    parser.feed(text)
    return parser
