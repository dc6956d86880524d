"""Interactive head analysis in Jupyter: pick heads on a layer x head score map, read their word-level attention
on a sentence pair against the gold links, build a head set while its ensemble AER updates, export it.

`HeadExplorer(scores, corpus, lm)` works on a finished `score_heads` run (`HeadScores` keeps every head's
word-level attention on every scored pair), so an interaction computes no attention: it changes the state and
redraws. Figures are built once (the score map per score and query kind, the attention maps per pair) and
updated in place: the selection marks are blitted onto the score map's saved background, the attention maps
get new image data. A run scored in the prefix condition too (`score --condition prefix`, `calibrate_border`) adds
the prefix view: each head's readiness AUC on source prefixes as the score map (`set_metric("readiness_auc")`).
`explorer.widget()` wraps it in ipywidgets (clicking the map needs ipyevents); displaying
the explorer shows that widget, or a PNG snapshot where widgets do not run (a notebook on a code host).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..base.errors import AlignheadsError
from ..corpus.pairs import Corpus, SentencePair
from ..heads.calibrate import build_headset
from ..heads.combine import SET_MEAN
from ..heads.ensemble import ensemble_attention, ensemble_metrics
from ..heads.headset import Head, HeadSet, headset_filename, load_headset
from ..heads.scoring import HeadScores, ScoreConfig
from ..heads.selection import Selection, SelectionConfig, stability
from ..model.loader import LoadedModel
from ..model.prompts import PromptLayout
from . import viz

METRICS = {"ts": "TS", "aer": "AER", "source_acc": "source acc", "readiness_auc": "readiness (prefix)"}
_SELECTED, _MEMBER = "black", "#e8112d"


@dataclass
class _ScoreMap:
    """One score x query kind heat map, drawn once; `background` is its pixels without the selection marks."""

    fig: Figure
    ax: Any
    background: Any
    marks: list[Rectangle] = field(default_factory=list)


def _png(fig: Figure) -> bytes:
    """The canvas' current pixels as PNG (no redraw)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(fig.canvas.buffer_rgba())).save(buf, format="png", compress_level=3)
    return buf.getvalue()


class HeadExplorer:
    """State and drawing of the head explorer; see the module docstring. `widget()` is the Jupyter front end."""

    def __init__(self, scores: HeadScores, corpus: Corpus, lm: LoadedModel, *, heads: Iterable[Head | tuple] = (),
                 metric: str = "ts", query: str | None = None, pair: int | str = 0,
                 layout: PromptLayout | None = None, score_config: ScoreConfig | None = None,
                 export_dir: str | Path = ".", dpi: int = 72):
        """`layout` and `score_config` must be those `scores` was computed with (defaults: `score_heads`' own);
        the exported head-set file records them."""
        if not scores.pair_ids:
            raise AlignheadsError("the explorer needs scored pairs: score_heads scored none")
        by_id = {p.id: p for p in corpus}
        missing = [pid for pid in scores.pair_ids if pid not in by_id]
        if missing:
            raise AlignheadsError(f"pairs {missing[:3]} were scored but are not in corpus {corpus.name!r}")
        self.scores, self.corpus, self.lm = scores, corpus, lm
        self.pairs: list[SentencePair] = [by_id[pid] for pid in scores.pair_ids]
        self.layout = layout or PromptLayout.for_tokenizer(lm.tokenizer, corpus.src_lang, corpus.tgt_lang)
        self.score_config = score_config or ScoreConfig()
        self.export_dir = Path(export_dir)
        self.dpi = dpi
        self.metric = self.query = ""
        self.head: Head | None = None
        self.set_metric(metric)
        self.set_query(query or scores.queries[0])
        self.pair = 0
        self.set_pair(pair)
        self.heads: list[Head] = []
        for h in heads:
            self.add(h)
        best = scores.heads[scores.heads["query"] == self.query].sort_values("ts", ascending=False).iloc[0]
        self.head = Head(int(best["layer"]), int(best["head"]), self.query)
        self._maps: tuple[int, Figure] | None = None  # the attention maps of one pair
        self._score_maps: dict[tuple[str, str], _ScoreMap] = {}
        self._metrics: dict[tuple[Head, ...], dict[str, float]] = {}
        self._drawn: dict[str, tuple[tuple, bytes]] = {}  # image -> (state it shows, its PNG)
        self._rows = scores.heads.set_index(["query", "layer", "head"])
        self._widget = None

    # ------------------------------------------------------------------------- state

    def as_head(self, h: Head | tuple) -> Head:
        """`h` as a `Head` ((layer, head[, query]) tuples: at the current query kind), checked against the scores."""
        if not isinstance(h, Head):
            h = Head(int(h[0]), int(h[1]), *(tuple(h[2:3]) or (self.query,)))
        if not (0 <= h.layer < self.scores.n_layers and 0 <= h.head < self.scores.n_heads):
            raise AlignheadsError(f"head {h} outside {self.scores.n_layers} layers x {self.scores.n_heads} heads")
        if h.query not in self.scores.queries:
            raise AlignheadsError(f"head {h}: query {h.query!r} was not scored (have {self.scores.queries})")
        return h

    def select(self, layer: int, head: int, query: str | None = None) -> Head:
        """Make (layer, head) at `query` (default: the current query kind) the selected head."""
        self.head = self.as_head((layer, head, query or self.query))
        if self.head.query != self.query:
            self.set_query(self.head.query)
        return self.head

    @property
    def metrics(self) -> dict[str, str]:
        """The scores this run can show (readiness only when it was scored in the prefix condition)."""
        return {k: v for k, v in METRICS.items() if k in self.scores.heads and self.scores.heads[k].notna().any()}

    def set_metric(self, metric: str) -> None:
        """Show `metric` (ts | aer | source_acc | readiness_auc, the prefix view) on the score map."""
        if metric not in self.metrics:
            raise AlignheadsError(f"score must be one of {list(self.metrics)}, not {metric!r}"
                                  + (" (readiness needs a run scored with --condition prefix)"
                                     if metric == "readiness_auc" else ""))
        self.metric = metric

    def set_query(self, query: str) -> None:
        """Show the score map of `query` (own | emit); the selected head moves to it."""
        if query not in self.scores.queries:
            raise AlignheadsError(f"query {query!r} was not scored (have {self.scores.queries})")
        self.query = query
        if self.head is not None:
            self.head = Head(self.head.layer, self.head.head, query)

    def set_pair(self, pair: int | str) -> None:
        """Show pair number `pair` of the scored pairs, or the pair with that id."""
        if isinstance(pair, str):
            if pair not in self.scores.pair_ids:
                raise AlignheadsError(f"pair {pair!r} was not scored; scored: {self.scores.pair_ids[:6]}...")
            pair = self.scores.pair_ids.index(pair)
        if not 0 <= pair < len(self.pairs):
            raise AlignheadsError(f"pair index {pair} out of range: {len(self.pairs)} pairs were scored")
        self.pair = int(pair)

    def add(self, head: Head | tuple | None = None) -> None:
        """Add `head` (default: the selected head) to the head set."""
        h = self.as_head(head) if head is not None else self.head
        if h not in self.heads:
            self.heads.append(h)

    def remove(self, head: Head | tuple | None = None) -> None:
        """Remove `head` (default: the selected head) from the head set."""
        h = self.as_head(head) if head is not None else self.head
        if h in self.heads:
            self.heads.remove(h)

    # ------------------------------------------------------------------------- numbers

    def ensemble(self) -> dict[str, float] | None:
        """AER / precision / recall of the head set's ensemble on all scored pairs (None for an empty set)."""
        if not self.heads:
            return None
        key = tuple(self.heads)
        if key not in self._metrics:
            self._metrics[key] = ensemble_metrics(self.scores, self.corpus, self.heads)
        return self._metrics[key]

    def head_scores(self, head: Head | None = None) -> pd.Series:
        """The score-table row of `head` (default: the selected one)."""
        h = head or self.head
        return self._rows.loc[(h.query, h.layer, h.head)]

    def head_info(self) -> str:
        """One line about the selected head."""
        r = self.head_scores()
        kv = " · KV-shared layer (not capturable by every runtime)" if bool(r.get("kv_shared", False)) else ""
        return (f"{self.head}: TS {r.ts:.3f} · source acc {r.source_acc:.3f} · AER {r.aer:.3f} "
                f"on {len(self.pairs)} pairs{kv}")

    def readout(self) -> str:
        """One line about the head set and its ensemble AER on the scored pairs."""
        base = self.scores.baselines
        diag = base[(base["kind"] == "diagonal") & (base["query"] == "own")]
        diag_txt = f" · diagonal baseline AER {float(diag['aer'].iloc[0]):.3f}" if len(diag) else ""
        m = self.ensemble()
        if m is None:
            return f"head set empty: add heads to see the ensemble's AER{diag_txt}"
        return (f"head set ({len(self.heads)}): {' '.join(map(str, self.heads))} · ensemble AER {m['aer']:.3f} "
                f"(P {m['precision']:.3f}, R {m['recall']:.3f}) on {len(self.pairs)} pairs{diag_txt}")

    # ------------------------------------------------------------------------- drawing

    def _score_map(self) -> _ScoreMap:
        key = (self.metric, self.query)
        if key not in self._score_maps:
            rows = self.scores.heads[self.scores.heads["query"] == self.query]
            fig = viz.head_heatmap(rows, self.metric, top_k=0, kv_shared_layers=self.lm.facts.kv_shared,
                                   title=f"{METRICS[self.metric]} per head (click to select)")
            fig.set_dpi(self.dpi)
            fig.canvas.draw()
            fig.set_layout_engine("none")  # freeze: the saved background and the click mapping need fixed pixels
            self._score_maps[key] = _ScoreMap(fig, fig.axes[0], fig.canvas.copy_from_bbox(fig.bbox))
        return self._score_maps[key]

    def _unchanged(self, image: str, state: tuple) -> bytes | None:
        drawn = self._drawn.get(image)
        return drawn[1] if drawn is not None and drawn[0] == state else None

    def heatmap_png(self) -> bytes:
        """The score map with the selected head (black) and the head set (red; dotted: read at the other query
        kind) marked."""
        state = (self.metric, self.query, self.head, tuple(self.heads))
        if (png := self._unchanged("heatmap", state)) is not None:
            return png
        sm = self._score_map()
        for mark in sm.marks:
            mark.remove()
        sm.marks = [Rectangle((h.head - 0.5, h.layer - 0.5), 1, 1, fill=False, edgecolor=_MEMBER, animated=True,
                              linewidth=2.2 if h.query == self.query else 1.4,
                              linestyle="-" if h.query == self.query else ":") for h in self.heads]
        sm.marks.append(Rectangle((self.head.head - 0.42, self.head.layer - 0.42), 0.84, 0.84, fill=False,
                                  edgecolor=_SELECTED, linewidth=2.0, animated=True))
        sm.fig.canvas.restore_region(sm.background)
        for mark in sm.marks:
            sm.ax.add_artist(mark)  # not add_patch: the data limits must not move
            sm.ax.draw_artist(mark)
        self._drawn["heatmap"] = (state, _png(sm.fig))
        return self._drawn["heatmap"][1]

    def head_at(self, x: float, y: float) -> Head | None:
        """The head under pixel (x, y) of `heatmap_png()` (origin top left), or None outside the map."""
        sm = self._score_map()
        px, py = x, sm.fig.bbox.height - y
        if not sm.ax.bbox.contains(px, py):
            return None
        col, row = sm.ax.transData.inverted().transform((px, py))
        layer, head = int(round(row)), int(round(col))
        if 0 <= layer < self.scores.n_layers and 0 <= head < self.scores.n_heads:
            return Head(layer, head, self.query)
        return None

    def _panels(self) -> list[tuple[np.ndarray, str]]:
        pair = self.pairs[self.pair]
        h = self.head
        head_map = self.scores.pair_heads(self.pair, [h])[0]
        if self.heads:
            set_map = ensemble_attention(self.scores, self.heads, self.pair)
            set_title = f"{SET_MEAN}, {len(self.heads)} heads"
        else:
            set_map = np.full((len(pair.tgt_words), len(pair.src_words)), np.nan)
            set_title = "head set: empty"
        return [(head_map, f"{pair.id}: {h}"), (set_map, set_title)]

    def maps_png(self) -> bytes:
        """The selected head's word-level attention on the current pair and the head set's mean, gold overlaid."""
        state = (self.pair, self.head, tuple(self.heads))
        if (png := self._unchanged("maps", state)) is not None:
            return png
        panels = self._panels()
        if self._maps is None or self._maps[0] != self.pair:
            pair = self.pairs[self.pair]
            fig = viz.attention_maps(panels, pair.src_words, pair.tgt_words, sure=pair.sure,
                                     possible=pair.possible - pair.sure)
            fig.set_dpi(self.dpi)
            fig.canvas.draw()
            fig.set_layout_engine("none")  # later draws only swap data; keep the layout of the first one
            self._maps = (self.pair, fig)
        else:
            fig = self._maps[1]
            for ax, (w, title) in zip(fig.axes, panels, strict=False):
                image = ax.images[0]
                image.set_data(np.ma.masked_invalid(w))
                image.set_clim(0.0, viz.colour_max(w))
                dots = next(line for line in ax.lines if line.get_gid() == "argmax")
                dots.set_data(*viz.row_argmax(w))
                ax.set_title(title)
            fig.canvas.draw()
        self._drawn["maps"] = (state, _png(fig))
        return self._drawn["maps"][1]

    def snapshot_png(self) -> bytes:
        """The score map and the attention maps side by side, as one PNG (what a static notebook shows)."""
        from PIL import Image

        images = [Image.open(io.BytesIO(b)) for b in (self.heatmap_png(), self.maps_png())]
        canvas = Image.new("RGBA", (sum(i.width for i in images), max(i.height for i in images)), "white")
        x = 0
        for image in images:
            canvas.paste(image, (x, 0))
            x += image.width
        buf = io.BytesIO()
        canvas.save(buf, format="png", compress_level=9)
        return buf.getvalue()

    # ------------------------------------------------------------------------- export

    def headset(self) -> HeadSet:
        """The head set as a head-set record (as `alignheads score` builds it), validated against the model."""
        if not self.heads:
            raise AlignheadsError("the head set is empty: add heads before exporting")
        cfg = SelectionConfig(method="manual", k=len(self.heads))
        steps = pd.DataFrame([{"step": i + 1, "added": str(h), "heads": " ".join(map(str, self.heads[: i + 1])),
                               **ensemble_metrics(self.scores, self.corpus, self.heads[: i + 1])}
                              for i, h in enumerate(self.heads)])
        selection = Selection(list(self.heads), steps, stability(self.scores, self.heads, cfg), cfg)
        hs = build_headset(self.lm, self.corpus, self.layout, self.scores, selection, self.score_config)
        hs.validate(self.lm.facts, self.layout)
        return hs

    def default_export_path(self) -> Path:
        f = self.lm.facts
        return self.export_dir / headset_filename(f.model_id, self.corpus.src_lang, self.corpus.tgt_lang)

    def export(self, path: str | Path | None = None) -> Path:
        """Write the head set (default: `default_export_path()`), read it back and validate it; returns the path."""
        path = Path(path) if path else self.default_export_path()
        if path.suffix != ".json":
            raise AlignheadsError(f"{path}: a head-set file is JSON; give a path ending in .json")
        saved = self.headset().save(path)
        load_headset(saved).validate(self.lm.facts, self.layout)
        return saved

    # ------------------------------------------------------------------------- Jupyter

    def widget(self):
        """The ipywidgets front end (built once)."""
        if self._widget is None:
            self._widget = ExplorerWidget(self)
        return self._widget.box

    def __repr__(self) -> str:
        return (f"HeadExplorer({len(self.pairs)} pairs of {self.corpus.name}, {self.scores.n_layers} layers x "
                f"{self.scores.n_heads} heads; selected {self.head}; {self.readout()})")

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        bundle = {}
        try:
            bundle = self.widget()._repr_mimebundle_(include=include, exclude=exclude) or {}
        except AlignheadsError:  # no ipywidgets: the static picture only
            pass
        bundle["text/plain"] = repr(self)
        bundle["image/png"] = base64.b64encode(self.snapshot_png()).decode("ascii")
        return bundle


class ExplorerWidget:
    """ipywidgets controls around a `HeadExplorer`: score map, attention maps, head set, export."""

    def __init__(self, explorer: HeadExplorer):
        try:
            import ipywidgets as w
        except ImportError:
            raise AlignheadsError("the explorer widget needs ipywidgets (pip install ipywidgets)") from None
        ex = self.ex = explorer
        self._quiet = False
        small = {"button_width": "96px"}
        self.metric = w.ToggleButtons(options=[(label, key) for key, label in ex.metrics.items()], value=ex.metric,
                                      description="score", style=small)
        self.query = w.ToggleButtons(options=list(ex.scores.queries), value=ex.query, description="query",
                                     style=small)
        self.layer = w.Dropdown(options=list(range(ex.scores.n_layers)), value=ex.head.layer, description="layer",
                                layout=w.Layout(width="150px"))
        self.head = w.Dropdown(options=list(range(ex.scores.n_heads)), value=ex.head.head, description="head",
                               layout=w.Layout(width="150px"))
        self.pair = w.Dropdown(options=[(f"{p.id}: {' '.join(p.src_words)[:70]}", i) for i, p in enumerate(ex.pairs)],
                               value=ex.pair, description="pair", layout=w.Layout(width="640px"))
        self.heatmap = w.Image(format="png", layout=w.Layout(flex="0 0 auto"))
        self.maps = w.Image(format="png", layout=w.Layout(flex="1 1 auto", min_width="0"))  # shrinks to fit
        self.info = w.HTML()
        self.readout = w.HTML()
        self.add = w.Button(description="add to set", icon="plus", tooltip="add the selected head to the head set")
        self.remove = w.Button(description="remove from set", icon="minus",
                               tooltip="remove the selected head from the head set")
        self.path = w.Text(value=str(ex.default_export_path()), description="file", layout=w.Layout(width="640px"))
        self.export = w.Button(description="export head set", icon="download")
        self.status = w.HTML()
        for name in ("heatmap", "maps", "info", "readout", "add", "remove", "path", "export", "status", "layer", "head",
                     "pair", "metric", "query"):
            getattr(self, name).add_class(f"alignheads-{name}")
        self.hint = ""
        try:
            from ipyevents import Event

            self._click = Event(source=self.heatmap, watched_events=["click"])
            self._click.on_dom_event(self._on_click)
        except ImportError:
            self.hint = " (install ipyevents to pick heads by clicking the map)"
        self.metric.observe(self._on_metric, "value")
        self.query.observe(self._on_query, "value")
        self.layer.observe(self._on_head, "value")
        self.head.observe(self._on_head, "value")
        self.pair.observe(self._on_pair, "value")
        self.add.on_click(self._on_add)
        self.remove.on_click(self._on_remove)
        self.export.on_click(self._on_export)
        self.box = w.VBox([
            w.HBox([self.metric, self.query]),
            w.HBox([self.layer, self.head, self.pair]),
            self.info,
            w.HBox([self.heatmap, self.maps], layout=w.Layout(align_items="flex-start")),
            w.HBox([self.add, self.remove]),
            self.readout,
            w.HBox([self.path, self.export]),
            self.status,
        ])
        self.box.add_class("alignheads-explorer")
        self.refresh()

    def refresh(self) -> None:
        """Redraw both images and the text from the explorer's state."""
        ex = self.ex
        self.heatmap.value = ex.heatmap_png()
        self.maps.value = ex.maps_png()
        self.info.value = f"<b>selected</b> {ex.head_info()}{self.hint}"
        self.readout.value = f"<b>{ex.readout()}</b>"
        self.add.disabled = ex.head in ex.heads
        self.remove.disabled = ex.head not in ex.heads

    def _show(self, layer: int, head: int) -> None:
        """Set the pickers without triggering their observers twice."""
        self._quiet = True
        try:
            self.layer.value, self.head.value = layer, head
        finally:
            self._quiet = False

    def _on_head(self, _change) -> None:
        if not self._quiet:
            self.ex.select(self.layer.value, self.head.value)
            self.refresh()

    def _on_click(self, event: dict) -> None:
        head = self.ex.head_at(event.get("dataX", -1), event.get("dataY", -1))
        if head is not None:
            self.ex.select(head.layer, head.head)
            self._show(head.layer, head.head)
            self.refresh()

    def _on_metric(self, change) -> None:
        self.ex.set_metric(change["new"])
        self.refresh()

    def _on_query(self, change) -> None:
        self.ex.set_query(change["new"])
        self.refresh()

    def _on_pair(self, change) -> None:
        self.ex.set_pair(change["new"])
        self.refresh()

    def _on_add(self, _button) -> None:
        self.ex.add()
        self.refresh()

    def _on_remove(self, _button) -> None:
        self.ex.remove()
        self.refresh()

    def _on_export(self, _button) -> None:
        try:
            path = self.ex.export(self.path.value)
        except AlignheadsError as e:
            self.status.value = f"<span style='color:#c00'>not exported: {html.escape(str(e))}</span>"
            return
        self.status.value = (f"wrote <code>{html.escape(str(path))}</code>: {len(self.ex.heads)} heads, read back and "
                             f"valid for {html.escape(self.ex.lm.facts.model_id)}")

