"""Choose a preset's layer cap on its own training collections, and write the capped preset.

For the preset's method, each cap of --caps is scored by leave-one-collection-out validation over
the preset's training collections (TREC DL 2019 left out, as for the presets); the shallowest cap
within one paired standard error of the best is chosen (:func:`routehead_pyserini.eval.loco.choose_layer_cap`).
The preset is trained at that cap and records the LOCO figures of that cap from the cap's own
`loco --max-layer` run (--loco-dir, written by the commands in docs/results.md).

    python scripts/choose_layer_cap.py --method heads+bm25+dense --caps 5,10,15,20,29 \\
        --loco-dir runs/loco/smollm2-135m-cap{cap} --uncapped-dir runs/loco/smollm2-135m
    python scripts/choose_layer_cap.py --model qwen2.5-coder-0.5b --quantize int8 --caps 5,11,17,23 \\
        --loco-dir runs/loco/qwen2.5-coder-0.5b-int8-cap{cap} --uncapped-dir runs/loco/qwen2.5-coder-0.5b-int8
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from routehead_pyserini.firststage.jvm import ensure_jvm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="heads+bm25+dense")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--quantize", default="none", choices=("none", "int8"))
    parser.add_argument("--caps", default="5,10,15,20,29", help="the last one is the model's last layer (no cap)")
    parser.add_argument("--collections", default="pipelines/collections/development.yaml")
    parser.add_argument("--exclude", default="trec-dl-2019")
    parser.add_argument("--loco-dir", default="runs/loco/smollm2-135m-cap{cap}")
    parser.add_argument("--uncapped-dir", default="runs/loco/smollm2-135m")
    parser.add_argument("--presets-dir", default="routehead_pyserini/heads/preset_files")
    parser.add_argument("--output", default=None, help="the cap rows as JSON [default: runs/loco/layer-cap-<model>.json]")
    parser.add_argument("--losses", default="pointwise", help="as `loco --losses` (the same as the LOCO runs)")
    args = parser.parse_args()
    ensure_jvm()
    from routehead_pyserini.eval.loco import METHODS, SearchSpace, choose_layer_cap, train_preset
    from routehead_pyserini.heads.pooled import load_pooled, read_collections
    from routehead_pyserini.heads.presets import preset_path, write_preset
    from routehead_pyserini.rerank.reranker import PromptSettings, Reranker

    quantize = None if args.quantize == "none" else args.quantize
    reranker = Reranker(args.model, "all", settings=PromptSettings(doc_max_tokens=128, mode="pointwise"), batch_size=5,
                        quantize=quantize)
    method = METHODS[args.method]
    data = load_pooled(read_collections(args.collections), reranker, top_k=20, dense=method.dense)
    keep = [c.name for c in data.collections if c.name != args.exclude]
    caps = [int(c) for c in args.caps.split(",")]
    space = SearchSpace(tuple(args.losses.split(",")))
    cap, rows = choose_layer_cap(data.training_set(method.fuse, method.dense, keep), method, caps, space)
    shipped = None if cap >= data.dataset.shape[0] - 1 else cap
    print(json.dumps({"chosen": cap, "rows": rows}, indent=1))
    folder = args.uncapped_dir if shipped is None else args.loco_dir.format(cap=cap)
    reports = json.loads(Path(folder, "report.json").read_text())
    pooled = [t for t in reports if t["protocol"] == "pooled-cv"]
    report = next(t for t in reports if t["protocol"] == "loco")
    name = method.capped(shipped).name
    scores = {"loco": {**{c: round(report["cells"][name][c]["means"]["nDCG@10"], 4) for c in report["collections"]},
                       "mean": round(report["means"][name], 4)},
              **({"pooled_cv": {**{c: round(pooled[0]["cells"][name][c]["means"]["nDCG@10"], 4) for c in pooled[0]["collections"]},
                                "mean": round(pooled[0]["means"][name], 4)}} if pooled and name in pooled[0]["cells"] else {}),
              "layer_cap": {"chosen": cap, "by": "shallowest cap within one paired standard error of the best, leave-one-collection-out "
                                                 "over the training collections", "caps": rows}}
    prompt = {**{k: v for k, v in reranker.describe()["settings"].items() if k != "max_context"}, "top_k": 20}
    command = f"python scripts/choose_layer_cap.py --model {args.model} --quantize {args.quantize} --method {args.method} --caps {args.caps}"
    head_set = train_preset(data, method.capped(shipped), model_name=reranker.model.name, model_fingerprint=reranker.model.fingerprint,
                            prompt_settings=prompt, scores=scores, exclude=[args.exclude], space=space, command=command,
                            quantize=quantize)
    write_preset(head_set, preset_path(args.presets_dir, head_set))
    output = Path(args.output or f"runs/loco/layer-cap-{args.model}{'' if quantize is None else '-' + quantize}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"chosen": cap, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
