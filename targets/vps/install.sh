#!/usr/bin/env bash
# Install or upgrade portabot on Debian or Ubuntu as a hardened systemd service. Run as root;
# running it again upgrades the app and keeps the settings. targets/vps/README.md walks through it.
set -euo pipefail

APP=/opt/portabot
VENV="$APP/venv"
CONFIG_DIR=/etc/portabot
ENV_FILE="$CONFIG_DIR/portabot.env"
UNIT_FILE=/etc/systemd/system/portabot.service
MAINTENANCE_UNITS="portabot-maintain.service portabot-maintain.timer"
TICK_UNITS="portabot-tick.service portabot-tick.timer"

usage() {
	cat <<EOF
Usage: sudo $0 [--source DIR|GIT-URL] [--domain NAME]

Copies portabot to $APP, installs it in the virtualenv $VENV, writes $ENV_FILE
(once: an existing one keeps its contents), (re)starts the systemd service portabot, which
brings the database schema up to date before it serves, and enables the hourly
portabot-maintain.timer and portabot-tick.timer (what is due, every minute).

  --source DIR|GIT-URL  where the app comes from (env PORTABOT_SOURCE); default: the
                        repository this script is in
  --domain NAME         the bot's domain name (env PORTABOT_DOMAIN), written into a new
                        $ENV_FILE as PUBLIC_URL=https://NAME
EOF
}

say() { printf 'portabot: %s\n' "$*"; }
die() {
	printf 'portabot: %s\n' "$*" >&2
	exit 1
}

source_arg="${PORTABOT_SOURCE:-}"
domain="${PORTABOT_DOMAIN:-}"
while [ "$#" -gt 0 ]; do
	case "$1" in
	--source) source_arg="${2:?--source needs a directory or a git URL}" && shift 2 ;;
	--source=*) source_arg="${1#--source=}" && shift ;;
	--domain) domain="${2:?--domain needs a domain name}" && shift 2 ;;
	--domain=*) domain="${1#--domain=}" && shift ;;
	-h | --help) usage && exit 0 ;;
	*) die "unknown argument: $1 (see --help)" ;;
	esac
done
if [ -z "$source_arg" ]; then
	source_arg="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
fi
case "$domain" in
*/* | *:* | *' '*) die "--domain takes a bare name such as bot.example.com, not a URL" ;;
esac

[ "$(id -u)" -eq 0 ] || die "run me as root: sudo $0"
[ -d /run/systemd/system ] || die "systemd is not running on this machine"
# Whatever the caller's umask, the service's user must be able to read what this script makes.
umask 022

# What Debian and Ubuntu leave out: venv (ensurepip), rsync, and git for a git URL.
is_git_url() { case "$1" in *://* | git@*:*) return 0 ;; *) return 1 ;; esac }
missing=()
command -v python3 >/dev/null || missing+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
command -v rsync >/dev/null || missing+=(rsync)
if is_git_url "$source_arg" && ! command -v git >/dev/null; then missing+=(git); fi
if [ "${#missing[@]}" -gt 0 ]; then
	command -v apt-get >/dev/null || die "please install: ${missing[*]}"
	say "installing ${missing[*]}"
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
	die "portabot needs Python 3.11 or newer; this system has $(python3 --version)"

if is_git_url "$source_arg"; then
	checkout="$(mktemp -d)"
	trap 'rm -rf -- "$checkout"' EXIT
	say "cloning $source_arg"
	git clone --quiet --depth 1 -- "$source_arg" "$checkout/portabot"
	source_dir="$checkout/portabot"
else
	source_dir="$(cd "$source_arg" 2>/dev/null && pwd)" || die "no such directory: $source_arg"
fi
if [ ! -f "$source_dir/pyproject.toml" ] ||
	[ ! -f "$source_dir/targets/vps/portabot.service" ]; then
	die "$source_dir is not a portabot checkout"
fi

install -d -m 0755 "$APP"
if [ "$(cd "$APP" && pwd -P)" != "$(cd "$source_dir" && pwd -P)" ]; then
	say "copying $source_dir to $APP"
	# Owned by root, readable by all and writable by no one else, whatever the umask the clone
	# was made under (git keeps only the executable bit); the venv and local state stay out.
	rsync -rlpt --delete --chmod=u=rwX,go=rX \
		--exclude=/venv --exclude=/.venv --exclude=/.git --exclude=/.env --exclude=/build \
		--exclude='*.egg-info' --exclude=__pycache__ --exclude='*.db' --exclude='*.db-*' \
		--exclude=.pytest_cache --exclude=.mypy_cache --exclude=.ruff_cache \
		"$source_dir/" "$APP/"
else
	# Installed where it was cloned: the same modes, but local settings and state keep theirs.
	find "$APP" \( -path "$VENV" -o -name .git -o -name .env -o -name '*.db' -o -name '*.db-*' \) \
		-prune -o -exec chmod u=rwX,go=rX {} +
fi

# A venv whose interpreter went away (a distribution upgrade) is made again.
if ! "$VENV/bin/python" -c '' 2>/dev/null; then
	say "creating the virtualenv $VENV"
	python3 -m venv --clear "$VENV"
fi
say "installing portabot and its dependencies into $VENV"
# The versions CI tested, each checked against its hash; then the app itself, which (being a
# directory) has no hash, without dependencies so that nothing unlocked comes in.
"$VENV/bin/pip" install --quiet --disable-pip-version-check --require-hashes \
	-r "$APP/requirements/deploy.txt"
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps --force-reinstall "$APP"

install -d -m 0700 -o root -g root "$CONFIG_DIR"
if [ -e "$ENV_FILE" ]; then
	say "keeping the settings in $ENV_FILE"
	[ -z "$domain" ] || say "(--domain is only used for a new $ENV_FILE: set PUBLIC_URL there)"
	created=no
else
	say "writing $ENV_FILE with a new SESSION_SECRET"
	session_secret="$("$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(32))')"
	public_url="#PUBLIC_URL=https://bot.example.com"
	[ -z "$domain" ] || public_url="PUBLIC_URL=https://$domain"
	(
		umask 077
		cat >"$ENV_FILE.new" <<EOF
# portabot's settings. systemd reads this file (as root) and hands them to the bot as its
# environment: KEY=value, one per line, no quotes needed; a line starting with # is ignored.
# After a change: sudo systemctl restart portabot

# Where people's state is kept: SQLite in the service's own directory, or PostgreSQL.
DATABASE_URL=sqlite:////var/lib/portabot/portabot.db
#DATABASE_URL=postgresql://portabot:PASSWORD@127.0.0.1/portabot

# The bot's public https:// address, the domain Caddy serves (for portabot set-webhook).
$public_url

# Telegram: the token @BotFather gave you, and the bot's @username.
#TELEGRAM_TOKEN=
#TELEGRAM_BOT_USERNAME=

# VK: the community's access key (messages and community management) and its number.
#VK_TOKEN=
#VK_GROUP_ID=

# A passphrase a new person must send first; unset lets everyone in.
#BOT_PASSPHRASE=
#BOT_NAME=portabot
#LOG_LEVEL=INFO
# Days the hourly portabot-maintain.timer keeps update ids and sent replies (at least 1).
#KEEP_UPDATES_DAYS=7
# Seconds between the runs of what is due in each gunicorn worker (0: only portabot-tick.timer's
# minute).
#TICK_SECONDS=15
# gunicorn worker processes (2 suit a VPS with one or two cores).
#WEB_CONCURRENCY=2

# Signs the web chat's cookie; made by install.sh. Changing it logs every web visitor out.
SESSION_SECRET=$session_secret
EOF
	)
	mv -- "$ENV_FILE.new" "$ENV_FILE"
	created=yes
fi
chown root:root "$ENV_FILE"
chmod 0600 "$ENV_FILE"

install -m 0644 "$APP/targets/vps/portabot.service" "$UNIT_FILE"
for unit in $MAINTENANCE_UNITS $TICK_UNITS; do
	install -m 0644 "$APP/targets/vps/$unit" "$(dirname "$UNIT_FILE")/$unit"
done
systemctl daemon-reload
systemctl enable --quiet portabot.service
say "starting portabot (it migrates the database first)"
if ! systemctl restart portabot.service; then
	journalctl --unit=portabot.service --lines=30 --no-pager >&2 || true
	die "portabot did not start; its log is above." \
		"Fix $ENV_FILE, then: sudo systemctl restart portabot"
fi
say "portabot is running: curl http://127.0.0.1:8000/healthz; logs: journalctl -u portabot -f"
# Hourly `portabot maintain`; its first run comes at the next hour, after the migration above.
systemctl enable --quiet --now portabot-maintain.timer
say "maintenance runs hourly: systemctl list-timers portabot-maintain.timer"
# `portabot tick` every minute (the bot's workers also run what is due every TICK_SECONDS).
systemctl enable --quiet --now portabot-tick.timer
say "what is due runs every minute: systemctl list-timers portabot-tick.timer"
if [ "$created" = yes ]; then
	say "next: fill in TELEGRAM_TOKEN (and VK's settings, PUBLIC_URL) in $ENV_FILE,"
	say "      then: sudo systemctl restart portabot (targets/vps/README.md has the rest)"
fi
