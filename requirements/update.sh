#!/usr/bin/env bash
# Resolve the locks again from pyproject.toml: exact versions with their hashes, for Python 3.11
# and newer on any platform. deploy.txt is what Heroku (../requirements.txt) and install.sh
# install, lambda.txt what `portabot package lambda` puts in the zip, test.txt what CI installs;
# a package in more than one has the same version in each.
#   requirements/update.sh                               after a change to pyproject.toml
#   requirements/update.sh --upgrade                     every package to its newest release
#   requirements/update.sh --upgrade-package starlette   one package
set -euo pipefail
cd "$(dirname "$0")"
bin="$(cd .. && pwd)/.venv/bin"
uv="$(command -v uv || echo "$bin/uv")"
[ -x "$uv" ] || { echo "requirements/update.sh needs uv: .venv/bin/pip install uv" >&2; exit 1; }
compile() {
	"$uv" pip compile --quiet --universal --python-version 3.11 --generate-hashes \
		--custom-compile-command "requirements/update.sh" "$@"
}
compile ../pyproject.toml --extra postgres --extra server -o deploy.txt "$@"
compile ../pyproject.toml --extra test --constraints deploy.txt -o test.txt "$@"
# The function's own list (core/packaging.py: no migration tools), at the versions CI tests.
"$bin/python" -c 'import portabot.packaging as p; print(*p.lambda_requirements(), sep="\n")' |
	compile - --constraints test.txt -o lambda.txt "$@"
