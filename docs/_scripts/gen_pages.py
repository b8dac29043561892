"""Generate the site's pages from the registry and from commands (run by mkdocs-gen-files).

Nothing here is typed by hand: the catalogue and one page per family come from
``losskit._registry`` (a section per registered loss: its one-line formula, backends, whether it
compiles whole, its Module, then the functional's and the Module's docstrings through
mkdocstrings); the conformance table is ``losskit check`` run now; the speed tables are the
files under ``benchmarks/results/`` (each carries its date and machine), with a PNG chart of the
torch-parity ratios.
"""

from __future__ import annotations

import re
import warnings
from collections import defaultdict
from pathlib import Path

import mkdocs_gen_files

from losskit._registry import all_losses
from losskit.conformance import format_table, run_checks

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"

FAMILY_TITLES = {
    "classification": "Classification (torch.nn mirrors)",
    "regression": "Regression (torch.nn mirrors)",
    "ranking": "Ranking and margins (torch.nn mirrors)",
    "divergence": "Divergences",
    "sequence": "Sequences (CTC)",
}


def family_title(family: str) -> str:
    return FAMILY_TITLES.get(family, family.replace("_", " ").capitalize())


def anchor(name: str) -> str:
    return name.lower().replace("_", "-")


def backends_text(info) -> str:
    record = info.dispatch_record
    names = list(info.backend_names)
    if record is None:
        return "formula"
    default = record.default()
    return ", ".join(f"**{b}** (CPU default)" if b == default else b for b in names)


_PUBLIC = (
    "losskit",
    "losskit.lm",
    "losskit.metric",
    "losskit.contrastive",
    "losskit.segmentation",
    "losskit.detection",
    "losskit.boxes",
    "losskit.gan",
)


def qualified(obj, name: str | None = None) -> str:
    """Where mkdocstrings finds ``obj``; a registry view defined in ``losskit.specs`` (a loss-only
    wrapper of a function returning several outputs) is documented as the public function."""
    if obj.__module__.startswith("losskit.specs") and name is not None:
        import importlib

        for module in _PUBLIC:
            public = getattr(importlib.import_module(module), name, None)
            if callable(public):
                obj = public
                break
    return f"{obj.__module__}.{obj.__qualname__}"


def family_page(family: str, infos: list) -> str:
    lines = [f"# {family_title(family)}", ""]
    lines += [
        "| loss | formula | backends | compiles whole |",
        "|---|---|---|---|",
    ]
    for i in infos:
        whole = "yes" if i.compiles_whole else "with graph breaks (data-dependent shape)"
        formula = i.formula.replace("|", "\\|")
        lines.append(
            f"| [`{i.name}`](#{anchor(i.name)}) | `{formula}` | {', '.join(i.backend_names)} | {whole} |"
        )
    lines.append("")
    shown: set[str] = set()
    for i in infos:
        lines += [f"## `{i.name}` {{#{anchor(i.name)}}}", ""]
        lines.append(f"**Formula:** `{i.formula}`  ")
        lines.append(f"**Backends:** {backends_text(i)}  ")
        mirrors = getattr(i.torch_functional, "__name__", None)
        if mirrors:
            lines.append(f"**Mirrors:** `torch.nn.functional.{mirrors.lstrip('_')}`  ")
        lines.append(
            "**torch.compile:** "
            + (
                "compiles whole (`fullgraph=True`)"
                if i.compiles_whole
                else "graph breaks: the output shape depends on the data"
            )
            + "  "
        )
        if i.module is not None:
            name = i.module.__name__.replace("LossOnly", "")
            lines.append(f"**Module:** `losskit.nn.{name}`  ")
        lines.append(f"**NumPy reference:** `{qualified(i.reference)}`")
        lines.append("")
        fn = qualified(i.functional, i.name)
        if fn in shown:
            lines += [
                f"Same function as above (`{i.functional.__name__}`), registered with other options.",
                "",
            ]
        else:
            shown.add(fn)
            lines += [f"::: {fn}", "    options:", "      heading_level: 3", ""]
        module = i.module
        if module is not None and module.__module__.startswith("losskit.specs"):
            # A registry view of a Module with several outputs: document the public Module.
            import losskit.nn

            module = getattr(losskit.nn, module.__name__.replace("LossOnly", ""), None)
        if module is not None:
            mod = qualified(module)
            if mod not in shown:
                shown.add(mod)
                lines += [
                    f"::: {mod}",
                    "    options:",
                    "      heading_level: 3",
                    "      members: false",
                    "",
                ]
    return "\n".join(lines)


def catalogue(by_family: dict[str, list]) -> str:
    total = sum(len(v) for v in by_family.values())
    lines = [
        "# Catalogue",
        "",
        f"{total} losses are registered (`losskit list`). Every one has a functional, a NumPy "
        "reference and the generic conformance suite; the backends column says what the "
        "functional can dispatch to (**torch**: torch's own op; **formula**: losskit's PyTorch "
        "composition; **kernel**: a Triton kernel, chosen on CUDA).",
        "",
        "| loss | family | backends | compiles whole | Module |",
        "|---|---|---|---|---|",
    ]
    for family, infos in by_family.items():
        for i in infos:
            module = f"`{i.module.__name__}`" if i.module is not None else "—"
            whole = "yes" if i.compiles_whole else "graph breaks"
            lines.append(
                f"| [`{i.name}`](losses/{family}.md#{anchor(i.name)}) | {family} | "
                f"{', '.join(i.backend_names)} | {whole} | {module} |"
            )
    return "\n".join(lines) + "\n"


def conformance() -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = run_checks()
    failed = [r for r in rows if not r.passed]
    cases = sum(r.cases for r in rows)
    return "\n".join(
        [
            "# Conformance",
            "",
            "Generated while this site was built, by the same code as `losskit check`: every "
            "registered loss, every sample and reduction, float64 and float32, against its NumPy "
            "reference and (for the torch mirrors) torch's own function, values and gradients. "
            "See [the method](guides/conformance.md).",
            "",
            f"**{len(rows)} losses, {cases} cases: {len(rows) - len(failed)} passed, {len(failed)} failed.**",
            "",
            "```text",
            format_table(rows),
            "```",
            "",
        ]
    )


def _parity_chart(text: str, out: str) -> bool:
    """A bar chart of the large-size parity ratios; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = [r.split("|") for r in text.splitlines() if r.startswith("| ") and "ratio" not in r]
    rows = [r for r in rows if len(r) > 7 and r[3].strip() == "all"]
    if not rows:
        return False
    labels = [f"{r[1].strip()} {r[2].strip()}" for r in rows]
    ratios = [float(r[7]) for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.22 * len(rows) + 1))
    ax.barh(labels, ratios, color=["tab:green" if x <= 1.1 else "tab:orange" for x in ratios])
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel("losskit time / torch time (forward + backward, default checks)")
    ax.tick_params(labelsize=6)
    fig.tight_layout()
    with mkdocs_gen_files.open(out, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
    return True


def speed() -> str:
    lines = [
        "# Speed",
        "",
        "Copied from the files under `benchmarks/results/`, each written by the command it "
        "names (date and machine in its header). CPU ratios are measured side by side in one "
        "process, interleaved; absolute times come only from a GPU.",
        "",
    ]
    for path in sorted(RESULTS.glob("*.md")):
        text = path.read_text()
        lines += [f"## `{path.name}`", ""]
        if path.name.startswith("parity") and _parity_chart(text, f"assets/{path.stem}.png"):
            lines += [f"![{path.stem}](assets/{path.stem}.png)", ""]
        # Demote the file's own headings below this page's.
        lines += [
            re.sub(r"^(#+) ", lambda m: "#" * (len(m.group(1)) + 2) + " ", t)
            for t in text.splitlines()
        ]
        lines.append("")
    gpu = ROOT / "benchmarks" / "RESULTS.md"
    if gpu.exists():
        lines += ["## GPU (`benchmarks/RESULTS.md`)", ""]
        lines += [
            re.sub(r"^(#+) ", lambda m: "#" * (len(m.group(1)) + 2) + " ", t)
            for t in gpu.read_text().splitlines()
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    by_family: dict[str, list] = defaultdict(list)
    for info in all_losses():
        if info.family.startswith("_"):
            continue
        by_family[info.family].append(info)
    for family, infos in by_family.items():
        with mkdocs_gen_files.open(f"losses/{family}.md", "w") as f:
            f.write(family_page(family, infos))
    with mkdocs_gen_files.open("catalogue.md", "w") as f:
        f.write(catalogue(by_family))
    with mkdocs_gen_files.open("conformance.md", "w") as f:
        f.write(conformance())
    with mkdocs_gen_files.open("speed.md", "w") as f:
        f.write(speed())


main()
