#!/usr/bin/env bash
# The Debian packages whose photographs `splitwire eval` adds to its ImageNet-model samples (photo
# sources `debian`, `lomiri`, `plasma`; splitwire/evaluation/inputs.py lists the files it uses).
# Best effort: needs root and apt-get; a source that is not installed is skipped and reported.
# scripts/setup.sh installs mate-backgrounds itself; the other two (about 130 MB) only this script.
set -uo pipefail
pkgs=(mate-backgrounds lomiri-wallpapers-16.04 plasma-workspace-wallpapers)
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "photos.sh: needs root and apt-get; install ${pkgs[*]} by other means" >&2
  exit 1
fi
apt-get install -y -q "${pkgs[@]}" >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q "${pkgs[@]}" >/dev/null; }
