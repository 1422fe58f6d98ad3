"""A kiln recipe written in Python: render text templates with the target's
params, deterministically, into /out.

componentize-py compiles this file, against kiln's wit/recipe.wit, into a
WebAssembly component that exports `build` (kiln:recipe@0.3.0); kiln runs it
like any recipe. Params (`templates` and `render` are required):

    templates   input holding the templates, e.g. "src"
    render      a table {output path: template path}, e.g. {"etc/motd" = "motd.txt"}
    vars        values for $name / ${name} placeholders
    executable  output paths to mark executable (mode 0755); optional

A placeholder with no value is a params error naming it. The input tree
`static/` under the templates input, if present, is copied into /out as it
is (modes and all) by the host.
"""

import json
import os
import string

import wit_world
from componentize_py_types import Err
from wit_world.imports import files, log, target, types


def bad_params(message: str) -> Err:
    return Err(types.BuildError_BadParams(message))


class WitWorld(wit_world.WitWorld):
    def build(self) -> None:
        params = json.loads(target.params())
        known = {"templates", "render", "vars", "executable"}
        unknown = sorted(set(params) - known)
        if unknown:
            raise bad_params(f"unknown params {unknown}; known: {sorted(known)}")
        for key in ("templates", "render"):
            if key not in params:
                raise bad_params(f"params.{key} is missing")
        inputs = {i.name for i in target.inputs()}
        if params["templates"] not in inputs:
            raise bad_params(
                f"params.templates names input {params['templates']!r}; the target declares {sorted(inputs)}"
            )
        root = "/inputs/" + params["templates"]
        values = {k: str(v) for k, v in params.get("vars", {}).items()}

        for output, template in sorted(params["render"].items()):
            if output.startswith("/") or ".." in output.split("/"):
                raise bad_params(f"render: output {output!r} must be a relative path inside /out")
            with open(os.path.join(root, template), encoding="utf-8") as f:
                text = f.read()
            try:
                rendered = string.Template(text).substitute(values)
            except KeyError as missing:
                raise bad_params(f"{template}: no value for ${missing.args[0]}; add it to params.vars")
            dest = os.path.join("/out", output)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "w", encoding="utf-8") as f:
                f.write(rendered)
            log.log(log.Level.INFO, f"rendered {template} -> /out/{output}")

        for output in params.get("executable", []):
            try:
                files.set_mode("/out/" + output, 0o755)
            except Err as e:
                raise Err(types.BuildError_Host(e.value))

        if os.path.isdir(os.path.join(root, "static")):
            files.copy(root + "/static", "/out/static")
