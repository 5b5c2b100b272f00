#!/bin/bash
# Records `kubectl flagger watch frontend` during `flagger demo --keep` with tmux capture-pane.
set -u
DIR=${DIR:-/tmp/rec}; rm -rf $DIR; mkdir -p $DIR/bin
ln -sf "$(realpath ${FLAGGER:-target/debug/flagger})" $DIR/bin/kubectl-flagger
${FLAGGER:-target/debug/flagger} demo --keep --plain --kubeconfig $DIR/kubeconfig > $DIR/demo.log 2>$DIR/demo.err &
DEMO=$!
echo $DEMO > $DIR/demo.pid
export KUBECONFIG=$DIR/kubeconfig PATH=$DIR/bin:$PATH
for i in $(seq 1 600); do
  kubectl -n test get canary frontend >/dev/null 2>&1 && break
  sleep 0.5
done
tmux -L rec new-session -d -s rec -x 112 -y 34 "KUBECONFIG=$DIR/kubeconfig PATH=$DIR/bin:$PATH kubectl flagger -n test watch frontend; sleep 600"
OUT=$DIR/frames.txt; : > $OUT
last=""; n=0
for i in $(seq 1 1200); do
  cur=$(tmux -L rec capture-pane -p -t rec)
  if [ "$cur" != "$last" ]; then
    n=$((n+1))
    printf '=== frame %d at %s ===\n%s\n\n' "$n" "$(date +%H:%M:%S.%N | cut -c1-12)" "$cur" >> $OUT
    last="$cur"
  fi
  grep -q "demo finished" $DIR/demo.log && { sleep 1; cur=$(tmux -L rec capture-pane -p -t rec); [ "$cur" != "$last" ] && printf '=== frame %d (final) ===\n%s\n' "$((n+1))" "$cur" >> $OUT; break; }
  sleep 0.25
done
tmux -L rec kill-server
kill -INT $DEMO; wait $DEMO
echo "frames: $n"
