#!/usr/bin/env bash
# Sourced by setup.sh, main.sh and test.sh: which Python the course uses.
#
# An active virtual environment ($VIRTUAL_ENV) or conda environment ($CONDA_PREFIX) is used as it
# is. Otherwise the course makes and uses its own environment, .venv in the repository (or
# $MAE_LESSON_VENV), so that nothing is ever installed into a system Python: Debian's and
# Ubuntu's refuse that (PEP 668, "externally-managed-environment"), and so do Homebrew's.

course_env_dir() {
  if [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
    echo "$VIRTUAL_ENV"
  elif [ -n "${CONDA_PREFIX:-}" ] && [ -x "$CONDA_PREFIX/bin/python" ]; then
    echo "$CONDA_PREFIX"
  else
    echo "${MAE_LESSON_VENV:-$(pwd -P)/.venv}"
  fi
}

course_python() {
  echo "$(course_env_dir)/bin/python"
}

# Create the project environment when it is missing. Debian and Ubuntu ship venv's pip bootstrap
# as a separate package (python3-venv): install it when we may, else say exactly what to run.
make_course_env() {
  local dir
  dir="$(course_env_dir)"
  [ -x "$dir/bin/python" ] && return 0
  local base="${MAE_LESSON_BASE_PYTHON:-python3}"
  command -v "$base" >/dev/null || { echo "error: $base not found; install Python 3.10 or newer first" >&2; return 2; }
  echo "Creating the course's Python environment in $dir (from $(command -v "$base"), $("$base" --version 2>&1))"
  local err
  err="$(mktemp)"
  if ! "$base" -m venv "$dir" >"$err" 2>&1; then
    rm -rf "$dir"
    local log
    log="$(cat "$err")"
    rm -f "$err"
    if command -v apt-get >/dev/null && grep -q "ensurepip" <<<"$log"; then
      local pkg
      pkg="python$("$base" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')-venv"
      local sudo=""
      [ "$(id -u)" -ne 0 ] && sudo="sudo"
      echo "Installing $pkg (Debian/Ubuntu keep venv's pip bootstrap in a separate package)"
      if $sudo apt-get install -y -qq "$pkg" >/dev/null 2>&1 \
         || { $sudo apt-get update -qq >/dev/null 2>&1 && $sudo apt-get install -y -qq "$pkg" >/dev/null 2>&1; }; then
        "$base" -m venv "$dir" && return 0
      fi
      echo "error: could not create $dir: run 'sudo apt-get install $pkg' and try again" >&2
      return 2
    fi
    echo "$log" >&2
    echo "error: could not create a virtual environment in $dir; activate one of your own (python3 -m venv, conda) and run this again" >&2
    return 2
  fi
  rm -f "$err"
}
