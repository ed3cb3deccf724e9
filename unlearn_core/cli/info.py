"""The listing commands: ``methods``, ``datasets``, ``models``."""

from __future__ import annotations

import json


def add_parsers(commands) -> None:
    methods = commands.add_parser("methods", help="list methods and their parameters")
    methods.set_defaults(handler=cmd_methods)
    methods.add_argument("--json", action="store_true", help="print as JSON")
    commands.add_parser("datasets", help="list data sets").set_defaults(handler=cmd_datasets)
    commands.add_parser("models", help="list models").set_defaults(handler=cmd_models)


def cmd_methods(args) -> int:
    from unlearn_core.methods import get_method, method_names

    described = [get_method(name).describe() for name in method_names()]
    if args.json:
        print(json.dumps(described, indent=2))
        return 0
    for method in described:
        print(f"{method['name']:14s} {method['title']}: {method['summary']}")
        from unlearn_core.forget import KINDS

        if set(method["forget_kinds"]) != set(KINDS):  # say it only where a method is not for every forget set
            print(f"    designed for: {', '.join(method['forget_kinds'])} forgetting (other forget sets run, "
                  "marked out of scope)")
        for p in method["params"]:
            bounds = ""
            if "choices" in p:
                bounds = f" one of {', '.join(p['choices'])}"
            elif "low" in p:
                bounds = f" in [{p['low']:g}, {p['high']:g}]"
            print(f"    --param {p['name']}=<{p['type']}> (default {p['default']}{bounds}): {p['help']}")
    return 0


def cmd_datasets(_) -> int:
    from unlearn_core.data import DATASETS, IMAGEFOLDER_PREFIX

    for info in DATASETS.values():
        where = "embedded" if info.embedded else "download"
        print(f"{info.name:14s} [{where}] default model {info.default_model}: {info.description}")
    print(f"{IMAGEFOLDER_PREFIX + '<path>':14s} [local] your class-per-folder images (inside UNLEARN_IMAGE_ROOT)")
    return 0


def cmd_models(_) -> int:
    from unlearn_core.models import MODELS

    for info in MODELS.values():
        print(f"{info.name:10s} {info.description}")
    return 0
