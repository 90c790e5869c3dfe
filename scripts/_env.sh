# Shared by scripts/*: find a Python, make sure uv exists, build a virtualenv.
# Source it; it defines functions only.

find_python() {  # find_python 3.11 -> path of a CPython 3.11 interpreter
    local want=$1 root candidate
    if command -v pyenv >/dev/null 2>&1; then
        root=$(pyenv root)
        for candidate in "$root"/versions/"$want".*/bin/python"$want"; do
            [ -x "$candidate" ] && { echo "$candidate"; return 0; }
        done
    fi
    candidate=$(command -v "python$want" 2>/dev/null || true)
    [ -n "$candidate" ] && { echo "$candidate"; return 0; }
    echo "no Python $want found (install it with pyenv, or put python$want on PATH)" >&2
    return 1
}

ensure_uv() {
    if ! command -v uv >/dev/null 2>&1; then
        python3 -m pip install --quiet --disable-pip-version-check uv
    fi
}

make_venv() {  # make_venv DIR PYTHON_VERSION [extra requirement ...]
    local dir=$1 version=$2
    shift 2
    ensure_uv
    local python
    python=$(find_python "$version")
    if [ ! -x "$dir/bin/python" ] || ! "$dir/bin/python" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$version'.split('.'))))"; then
        uv venv --quiet --python "$python" --python-preference only-system "$dir"
    fi
    uv pip install --quiet --python "$dir/bin/python" -e ".[test,lint]" "$@"
}
