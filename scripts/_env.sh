# Shared by scripts/* and .ci/run: find a Python, make sure uv exists, build a
# virtualenv.  Source it; it defines functions only.
#
# Nothing is installed outside this checkout: when uv is not on PATH it is
# installed into .venvs/bootstrap (a venv of the Python found below), never
# into the user's or the system's Python (Debian's refuses anyway:
# "externally-managed-environment").

DEFAULT_PYTHON=3.11        # the main CI environment's version
FALLBACK_PYTHONS="3.12 3.13 3.10"  # tested by the CI matrix, in order of preference
BOOTSTRAP_VENV=.venvs/bootstrap

python_version() {  # python_version PYTHON -> "3.11" (nothing when it does not run)
    "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true
}

_find_exact() {  # _find_exact 3.11 -> a CPython 3.11 from pyenv or PATH
    local want=$1 root candidate
    if command -v pyenv >/dev/null 2>&1; then
        root=$(pyenv root)
        for candidate in "$root"/versions/"$want".*/bin/python"$want"; do
            [ -x "$candidate" ] && { echo "$candidate"; return 0; }
        done
    fi
    candidate=$(command -v "python$want" 2>/dev/null || true)
    # pyenv's shims answer for versions that are not installed: ask the interpreter.
    if [ -n "$candidate" ] && [ "$(python_version "$candidate")" = "$want" ]; then
        echo "$candidate"
        return 0
    fi
    return 1
}

find_python() {  # find_python [X.Y] -> path of a Python X.Y; no X.Y: 3.11, else the best >= 3.10
    local want=${1:-} candidate
    if [ -n "$want" ]; then
        _find_exact "$want" && return 0
        echo "no Python $want found (install it with pyenv, or put python$want on PATH)" >&2
        return 1
    fi
    for want in $DEFAULT_PYTHON $FALLBACK_PYTHONS; do
        _find_exact "$want" && return 0
    done
    candidate=$(command -v python3 2>/dev/null || true)
    if [ -n "$candidate" ] && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
        echo "$candidate"
        return 0
    fi
    echo "no Python 3.10 or newer found: install one (your system's python3 package, or pyenv)" \
        "and put it on PATH, or name one with DEPSTRACE_PYTHON=3.12" >&2
    return 1
}

ensure_uv() {  # ensure_uv PYTHON: uv on PATH, else installed into $BOOTSTRAP_VENV (once)
    local python=$1 boot out
    if command -v uv >/dev/null 2>&1; then
        return 0
    fi
    boot="$PWD/$BOOTSTRAP_VENV"
    case $PWD in *:*)
        echo "this checkout's path ($PWD) contains ':', which no folder on PATH may" \
            "(python -m venv refuses it too): clone it under a path without ':', or put uv" \
            "on PATH yourself (https://docs.astral.sh/uv/)." >&2
        return 1 ;;
    esac
    if [ ! -x "$boot/bin/uv" ]; then
        echo "uv is not on PATH: installing it into $BOOTSTRAP_VENV with $python" \
            "(nothing outside this checkout changes)" >&2
        # Built under a name of its own and moved into place whole: two scripts that
        # bootstrap at once (CI runs two side by side) never share a half-built venv.
        local final=$boot
        boot="$final.$BASHPID"
        rm -rf "$boot"
        # A venv with pip first.  Where venv or ensurepip fails (Debian without
        # python3-venv, a Python built without ensurepip), that Python's own pip
        # puts uv's wheel in the folder instead (its binary lands in bin/): uv is
        # one static binary either way.  Only bash builtins, rm and mv are used
        # here, so this works with the barest PATH.
        if out=$("$python" -m venv "$boot" 2>&1) \
            && out=$("$boot/bin/python" -m pip install --quiet --disable-pip-version-check uv 2>&1); then
            :
        elif rm -rf "$boot" \
            && out="$out"$'\n'$("$python" -m pip install --quiet --disable-pip-version-check --target "$boot" uv 2>&1) \
            && [ -x "$boot/bin/uv" ]; then
            :
        else
            rm -rf "$boot"
            echo "cannot install uv with $python: neither a virtual environment (python -m venv)" \
                "nor that Python's pip (python -m pip install --target) worked. On Debian or" \
                "Ubuntu: sudo apt install python3-venv python3-pip; or install uv yourself" \
                "(https://docs.astral.sh/uv/) and run this again. What they printed:" >&2
            printf '%s\n' "$out" | while IFS= read -r line; do
                case $line in "WARNING: Location"*|"") ;; *) printf '    %s\n' "$line" >&2 ;; esac
            done
            return 1
        fi
        if [ -x "$final/bin/uv" ]; then  # another script finished first: use its uv
            rm -rf "$boot"
        else
            rm -rf "$final"
            mv "$boot" "$final"
        fi
        boot=$final
    fi
    export PATH="$boot/bin:$PATH"  # for the rest of the script and what it runs (tests)
}

make_venv() {  # make_venv DIR [X.Y] [extra requirement ...]: DIR with depstrace[test,lint]
    local dir=$1 version=${2:-} python found
    shift 2 || shift $#
    python=$(find_python "$version") || return 1
    found=$(python_version "$python")
    if [ -z "$version" ] && [ "$found" != "$DEFAULT_PYTHON" ]; then
        echo "Python $DEFAULT_PYTHON not found; using Python $found ($python)" >&2
    fi
    ensure_uv "$python" || return 1
    if [ ! -x "$dir/bin/python" ] || [ "$(python_version "$dir/bin/python")" != "$found" ]; then
        echo "building $dir with Python $found ($python)" >&2
        rm -rf "$dir"  # another Python's venv: start over (uv versions disagree on replacing)
        uv venv --quiet --python "$python" --python-preference only-system "$dir"
    fi
    uv pip install --quiet --python "$dir/bin/python" -e ".[test,lint]" "$@"
}
