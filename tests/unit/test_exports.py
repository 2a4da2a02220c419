import subprocess
import sys
import types

import faust_inference


def test_all_is_sorted_and_complete():
    exported = faust_inference.__all__
    assert list(exported) == sorted(exported)
    for name in exported:
        assert hasattr(faust_inference, name), name
    public = {
        n
        for n in dir(faust_inference)
        if not n.startswith("_") and not isinstance(getattr(faust_inference, n), types.ModuleType)
    }
    assert public == set(exported) - {"__version__"}


def test_import_has_no_side_effects():
    code = (
        "import sys, threading, faust_inference; "
        "assert 'faust' not in sys.modules, 'faust imported'; "
        "assert threading.active_count() == 1, 'a thread was started'; "
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok" and out.stderr == ""
