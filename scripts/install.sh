#!/usr/bin/env bash
# make install: the binary, the systemd units, the default configs and the
# docs. Never overwrites a config: a changed default goes next to it as
# NAME.dist. Paths (make variables, or the environment):
#   DESTDIR        staging root, prepended to every path written (packagers)
#   PREFIX         /usr/local: BINDIR=$PREFIX/bin, UNITDIR=$PREFIX/lib/systemd/system,
#                  DOCDIR=$PREFIX/share/doc/xtrail
#   SYSCONFDIR     /etc: configs and keys in $SYSCONFDIR/xtrail
#   LOCALSTATEDIR  /var: trail store in $LOCALSTATEDIR/lib/xtrail, logs in $LOCALSTATEDIR/log
# The units and configs name the default paths; other paths are written
# into the installed copies.
#   scripts/install.sh [BINARY]   (default bin/xtrail)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$src/bin/xtrail}

PREFIX=${PREFIX:-/usr/local}
BINDIR=${BINDIR:-$PREFIX/bin}
UNITDIR=${UNITDIR:-$PREFIX/lib/systemd/system}
DOCDIR=${DOCDIR:-$PREFIX/share/doc/xtrail}
SYSCONFDIR=${SYSCONFDIR:-/etc}
LOCALSTATEDIR=${LOCALSTATEDIR:-/var}
DESTDIR=${DESTDIR:-}
confdir=$SYSCONFDIR/xtrail

[ -x "$bin" ] || { echo "install: $bin is not an executable (make build first)" >&2; exit 1; }

# localize FILE: the file with the default paths replaced by the chosen ones
localize() {
	sed -e "s|/usr/local/bin/xtrail|$BINDIR/xtrail|g" \
		-e "s|/usr/local/share/doc/xtrail|$DOCDIR|g" \
		-e "s|/etc/xtrail|$confdir|g" \
		-e "s|/var/lib/xtrail|$LOCALSTATEDIR/lib/xtrail|g" \
		-e "s|/var/log/|$LOCALSTATEDIR/log/|g" "$1"
}

install -d -m 0755 "$DESTDIR$BINDIR" "$DESTDIR$UNITDIR" "$DESTDIR$DOCDIR"
# configs hold keys: root only (the services get theirs through systemd);
# an existing directory keeps its owner and mode
[ -d "$DESTDIR$confdir" ] || install -d -m 0700 "$DESTDIR$confdir"

# a running binary is replaced by a rename, never written in place
install -m 0755 "$bin" "$DESTDIR$BINDIR/.xtrail.new"
mv -f "$DESTDIR$BINDIR/.xtrail.new" "$DESTDIR$BINDIR/xtrail"
echo "install: $DESTDIR$BINDIR/xtrail"

for unit in "$src"/deploy/systemd/*.service; do
	localize "$unit" > "$DESTDIR$UNITDIR/.unit.new"
	chmod 0644 "$DESTDIR$UNITDIR/.unit.new"
	mv -f "$DESTDIR$UNITDIR/.unit.new" "$DESTDIR$UNITDIR/$(basename "$unit")"
	echo "install: $DESTDIR$UNITDIR/$(basename "$unit")"
done

for conf in "$src"/deploy/config/*; do
	dst=$DESTDIR$confdir/$(basename "$conf")
	if [ ! -e "$dst" ]; then
		localize "$conf" > "$dst.new"
		chmod 0600 "$dst.new"
		mv "$dst.new" "$dst"
		echo "install: $dst"
	elif ! localize "$conf" | cmp -s - "$dst"; then
		localize "$conf" > "$dst.dist"
		chmod 0600 "$dst.dist"
		echo "install: kept $dst (the new default is $dst.dist)"
	fi
done

for doc in README.md docs/deploy.md docs/architecture.md docs/configuration.md docs/grafana-dashboard.json; do
	install -m 0644 "$src/$doc" "$DESTDIR$DOCDIR/$(basename "$doc")"
done
echo "install: docs in $DESTDIR$DOCDIR"
if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
	systemctl daemon-reload
fi
