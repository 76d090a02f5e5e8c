"""Set-up converters: derive a model file from third-party weights (e.g. PyTorch -> ONNX).

Every module in this folder imports only the standard library and the converter's own
pinned packages (``converter_requires`` in the pack manifest, e.g. torch and onnx), never
numpy-dependent appliance modules: ``appliance models convert`` runs a converter by file
path with ``python -I`` in a throw-away venv that has no appliance installed, and a
converter puts only this folder on ``sys.path`` to reach its stdlib-only siblings
(``reference_inputs``). The main venv's site-packages never enter the converter venv.

A converter module is a script with this command line:

* ``--inputs PATH...``: the pack's ``[file.source].inputs``, in manifest order;
* ``--out FILE``: write the converted model here (the caller moves it into place);
* ``--threads N``: intra-op threads of the exporting framework (a different count gives a
  different, equally valid export: the bytes are not reproducible, the outputs are);
* ``--reference SPEC_JSON``: instead of exporting, run the ORIGINAL model on the reference
  inputs described by SPEC_JSON (``generator``, ``seed``, ``samples``, ``inputs``) and print
  its outputs as JSON: these are the ``[check].expected`` values of the manifest.

On success an export prints one JSON line: the output path, the threads used and the
versions of the packages it imported.
"""
