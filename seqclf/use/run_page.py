"""The report page of one run (see seqclf.use.report): what it is, how it trained, how it scores, how it reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seqclf import __version__
from seqclf.config import Config, keys_where, load_config, to_dict, to_yaml
from seqclf.config import shipped as shipped_configs
from seqclf.config.schema import config_diff, flatten
from seqclf.store import rundir as runs
from seqclf.store.rundir import RunDir
from seqclf.use import report_html as h

MISTAKES = 16  # the most confident wrong predictions shown
TRACED = 4  # test examples whose reading trace is drawn


def run_config(run_dir: Path) -> Config:
    return load_config(RunDir(run_dir).config_path)


def closest_shipped(cfg: Config) -> tuple[str, dict[str, list[Any]]]:
    """The shipped config with the fewest differences that matter (not where the data or runs live) from
    `cfg`, and every difference: a run's config.yaml is resolved and does not record the file it came from."""
    incidental = keys_where("incidental") | {"data.root", "data.download"}
    found = []
    for name in shipped_configs.names():
        diff = config_diff(load_config(shipped_configs.path_of(name)), cfg)
        found.append((len([key for key in diff if key not in incidental]), name, diff))
    _, name, diff = min(found, key=lambda item: item[:2])
    return name, diff


def per_class_scores(matrix: list[list[int]], names: list[str]) -> list[list[Any]]:
    """Rows of name, precision, recall, F1, support from a confusion matrix (rows = true class)."""
    rows = []
    for k, name in enumerate(names):
        hits, support = matrix[k][k], sum(matrix[k])
        predicted = sum(row[k] for row in matrix)
        precision = hits / predicted if predicted else None
        recall = hits / support if support else None
        f1 = (2 * precision * recall / (precision + recall) if precision and recall else
              (0.0 if precision is not None and recall is not None else None))
        rows.append([name, *(f"{v:.3f}" if v is not None else None for v in (precision, recall, f1)), f"{support:,}"])
    return rows


def checkpoint_views(best: Path, overrides: list[str] | tuple[str, ...], split: str) -> dict[str, Any]:
    """What a checkpoint shows on its data: eval's result, its mistakes and traces of the first test examples."""
    import torch

    from seqclf.data.datasets import split_images
    from seqclf.use.evaluate import eval_config, evaluate_checkpoint
    from seqclf.use.plot import find_mistakes
    from seqclf.use.predict import Predictor
    from seqclf.use.trace import trace_records

    result = evaluate_checkpoint(best, overrides, split)
    found = find_mistakes(best, MISTAKES, split, overrides)
    predictor = Predictor.from_checkpoint(best)
    cfg = eval_config(predictor.cfg, overrides, best)
    images, labels = split_images(cfg.data, cfg.seed, split)
    images, labels = images[:TRACED].numpy(), labels[:TRACED].tolist()
    probabilities = torch.softmax(predictor.logits_by_step(images), dim=2).numpy()  # (n, T, C)
    names = [f"{split} example {i}" for i in range(len(images))]
    return {"eval": result, "mistakes": found, "trace_images": images,
            "traces": trace_records(probabilities, names, predictor.class_names),
            "trace_true": [predictor.class_names[label] for label in labels]}


def run_page(run_dir: Path, overrides: list[str] | tuple[str, ...], split: str) -> str:
    """The page of one run."""
    from seqclf.use import figures

    cfg = run_config(run_dir)
    summary = RunDir(run_dir).read_summary() or {}
    history = RunDir(run_dir).read_metrics()
    best = RunDir(run_dir).best
    views = checkpoint_views(best, overrides, split) if best.exists() else None
    m = cfg.model
    body = [h.heading(1, run_dir.name),
            h.paragraph(f"{m.cell} {m.num_layers}x{m.hidden_size}{' bidirectional' if m.bidirectional else ''}, "
                        f"reading {cfg.data.name} as {cfg.data.sequence}; status {summary.get('status', 'unknown')}; "
                        f"{run_dir}", "lead")]
    body.append(h.cards(key_figures(summary, views)))
    body += config_section(cfg)
    body.append(h.heading(2, "Training curves", "curves"))
    body.append(h.figure(figures.png_data_uri(figures.draw_curves([(run_dir.name, history)])),
                         "loss, accuracy, learning rate and gradient norm per epoch") if history else
                h.paragraph("No finished epoch yet.", "note"))
    if views is None:
        body.append(h.paragraph(f"No {runs.BEST} yet: scores appear after the first finished epoch.", "note"))
    else:
        body += scores_section(views, split) + reading_section(views, split)
    body.append(footer([str(run_dir)]))
    return h.page(f"seqclf report: {run_dir.name}", body)


def key_figures(summary: dict[str, Any], views: dict[str, Any] | None) -> list[tuple[str, str]]:
    def number(value: Any, form: str) -> str:
        return format(value, form) if isinstance(value, (int, float)) else "\u2013"

    items = [(number(summary.get("val_accuracy"), ".4f"), f"best val accuracy (epoch {summary.get('best_epoch')})")]
    if views is not None:
        result = views["eval"]
        items += [(f"{result['accuracy']:.4f}", f"{result['split']} accuracy of best.pt"),
                  (number(result["calibration"]["ece"], ".4f"), "expected calibration error")]
    return items + [(number(summary.get("parameters"), ","), "parameters"),
                    (number(summary.get("epochs"), "d"), "epochs"),
                    (number(summary.get("seconds"), ".1f") + " s", "training time")]


def config_section(cfg: Config) -> list[str]:
    name, diff = closest_shipped(cfg)
    rows = [[key, repr_value(a), repr_value(b)] for key, (a, b) in diff.items()]
    return [h.heading(2, "Config", "config"),
            h.paragraph(f"Against the closest shipped config, {name} (seqclf config show --config {name}); "
                        f"{len(rows)} key(s) differ.", "note"),
            h.table(["key", f"shipped {name}", "this run"], rows) if rows else "",
            h.collapsed("the resolved config (config.yaml)", h.preformatted(to_yaml(cfg)))]


def repr_value(value: Any) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def scores_section(views: dict[str, Any], split: str) -> list[str]:
    from seqclf.use import figures

    result = views["eval"]
    names = result["class_names"]
    calibration = result["calibration"]
    return [h.heading(2, f"Scores on the {split} split", "scores"),
            h.paragraph(f"accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f} on {result['n']:,} examples "
                        f"(best.pt; seqclf eval gives the same numbers)", "note"),
            h.row(h.heading(3, "per class") + h.table(["class", "precision", "recall", "F1", "examples"],
                                                        per_class_scores(result["confusion_matrix"], names)),
                  h.heading(3, "calibration") + h.figure(figures.png_data_uri(figures.draw_reliability(calibration)),
                                                         "reliability diagram", 420)),
            h.heading(3, "confusion matrix (rows: true class, columns: predicted)"),
            h.confusion(result["confusion_matrix"], names)]


def reading_section(views: dict[str, Any], split: str) -> list[str]:
    from seqclf.use import figures
    from seqclf.use.trace import steps_to_reach

    result, found = views["eval"], views["mistakes"]
    step, by_step = result["step"], result["accuracy_by_step"]
    parts = [h.heading(2, "Reading", "reading")]
    if by_step is None:
        parts.append(h.paragraph(f"accuracy by {step}s read: {result['accuracy_by_step_note']}", "note"))
    else:
        final = by_step[-1]
        reach = steps_to_reach(by_step, 0.95 * final)
        parts += [h.paragraph(f"Accuracy had the model stopped reading after k {step}s: 95% of its final accuracy "
                              f"({0.95 * final:.3f}) after {reach} of {len(by_step)} {step}s.", "note"),
                  h.figure(figures.png_data_uri(figures.draw_accuracy_by_step([("best.pt", by_step)], step)),
                           f"accuracy by {step}s read", 640)]
    traced = figures.draw_traces(views["traces"], views["trace_images"], result["class_names"], step,
                                 views["trace_true"], columns=2)
    parts += [h.heading(3, f"trace of the first {len(views['traces'])} {split} examples"),
              h.figure(figures.png_data_uri(traced), "class probabilities after each step read"),
              h.heading(2, "Most confident mistakes", "mistakes"),
              h.paragraph(f"{found['errors']:,} of {found['total']:,} {split} examples are wrong; the "
                          f"{len(found['true'])} most confident:" if found["errors"] else
                          f"No mistakes on the {found['total']:,} {split} examples.", "note"),
              h.mistakes([(figures.image_data_uri(image), found["class_names"][true], found["class_names"][guess], p)
                          for image, true, guess, p in zip(found["images"], found["true"], found["predicted"],
                                                           found["probability"])])]
    return parts


def footer(paths: list[str]) -> str:
    return h.paragraph(f"Written by seqclf {__version__}: seqclf report {' '.join(paths)}", "note")


def flat_config(cfg: Config) -> dict[str, Any]:
    return flatten(to_dict(cfg))
