#!/bin/sh
# The main job: installs what is missing, builds, starts the embedded Kafka (librdkafka's mock
# cluster), the example participants (class, payment, delivery over HTTP; delivery and
# notification over Kafka) and sagad on the embedded SQLite default with the flows of flows/,
# then gives a short guided tour with sagactl: a class application that completes, one that
# compensates, and one whose textbook delivery goes through Kafka. It keeps running until Ctrl-C when started from a terminal (DEMO_STAY=0 to stop
# after the tour; DEMO_STAY=1 to stay even without a terminal).
set -eu
cd "$(dirname "$0")/.."
TOP=$(pwd)
# ./scripts/demo.sh [SEED]: 000 (default, the class application) or one of the other seed
# systems, 001 to 004, each with its own participants and guided tour (examples/seedNNN/).
SEED=${1:-${DEMO_SEED:-000}}
case $SEED in
000 | 001 | 002 | 003 | 004) ;;
*) echo "usage: $0 [000|001|002|003|004]  (the seed system to run; default 000)" >&2; exit 2 ;;
esac
./scripts/install-deps.sh
echo "== building sagad and sagactl"
./scripts/build.sh

RUN="$TOP/run/demo"
rm -rf "$RUN"
mkdir -p "$RUN"
PIDS=""
cleanup() {
	for p in $PIDS $(cat "$RUN"/*.pid 2>/dev/null); do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

port_of() { # file
	i=0
	while [ ! -s "$1" ]; do
		i=$((i + 1)); [ $i -gt 100 ] && { echo "demo: $1 did not appear" >&2; exit 1; }
		sleep 0.1
	done
	cat "$1"
}

echo "== starting the embedded Kafka (sagad-kafka-mock: the real protocol, in memory)"
./sagad-kafka-mock --brokers 3 --topic delivery-commands:3 --topic delivery-events:3 \
	--topic saga-events:3 --topic class-events:3 --topic class-applications:3 \
	--topic shop:3 --topic prereservation:3 --topic pizza-events:3 --topic pizza-coupon:3 \
	--topic pizza-delivery-commands:3 --topic pizza-delivery-events:3 --topic ssak5-events:3 \
	--bootstrap-file "$RUN/kafka.bootstrap" >"$RUN/kafka.out" 2>"$RUN/kafka.log" &
PIDS="$PIDS $!"
KAFKA=$(port_of "$RUN/kafka.bootstrap")
echo "   bootstrap servers $KAFKA"
# Against the mock only: it answers long-polling fetches late and keeps old group members.
KAFKA_X="-X fetch.wait.max.ms=10 -X session.timeout.ms=6000 -X heartbeat.interval.ms=500"

echo "== starting the example participants (their own processes, SQLite records)"
for svc in class payment delivery; do
	python3 examples/participants/participant.py "$svc" --port 0 --db "$RUN/$svc.db" \
		--port-file "$RUN/$svc.port" 2>"$RUN/$svc.log" &
	PIDS="$PIDS $!"
done
for svc in delivery notification; do
	/usr/bin/python3 examples/participants/kafka_participant.py "$svc" --bootstrap "$KAFKA" \
		--db "$RUN/kafka-$svc.db" --config fetch.wait.max.ms=10 --control-port 0 \
		--control-port-file "$RUN/kafka-$svc.port" 2>"$RUN/kafka-$svc.log" &
	PIDS="$PIDS $!"
done
CLASS_URL="http://127.0.0.1:$(port_of "$RUN/class.port")"
PAYMENT_URL="http://127.0.0.1:$(port_of "$RUN/payment.port")"
DELIVERY_URL="http://127.0.0.1:$(port_of "$RUN/delivery.port")"
export CLASS_URL PAYMENT_URL DELIVERY_URL
echo "   class $CLASS_URL, payment $PAYMENT_URL, delivery $DELIVERY_URL"

if [ "$SEED" != 000 ]; then
	echo "== starting the participants of seed $SEED (examples/seed$SEED/)"
	# shellcheck disable=SC1090
	. "examples/seed$SEED/demo.sh"
	export KAFKA
	seed_start "$RUN"
fi

echo "== starting sagad (flows/, database $RUN/sagad.db)"
# shellcheck disable=SC2086
./sagad --flows flows --db "$RUN/sagad.db" --listen "${SAGAD_LISTEN:-127.0.0.1:0}" \
	--port-file "$RUN/sagad.port" --kafka-brokers "$KAFKA" $KAFKA_X \
	--lifecycle-topic saga-events 2>"$RUN/sagad.log" &
PIDS="$PIDS $!"
SAGAD_URL="http://127.0.0.1:$(port_of "$RUN/sagad.port")"
export SAGAD_URL
echo "   sagad $SAGAD_URL (log: $RUN/sagad.log)"

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

say "1. The flows sagad loaded"
run ./sagactl flow list

# From a terminal everything keeps running until Ctrl-C (DEMO_STAY=0/1 to choose).
stay_if_asked() {
	stay=${DEMO_STAY:-}
	if [ -z "$stay" ]; then
		if [ -t 0 ] && [ -z "${CI:-}" ]; then stay=1; else stay=0; fi
	fi
	if [ "$stay" = 1 ]; then
		say "sagad is running: export SAGAD_URL=$SAGAD_URL and try ./sagactl --help. Ctrl-C stops everything."
		wait
	fi
}

if [ "$SEED" != 000 ]; then
	seed_tour
	stay_if_asked
	echo
	echo "demo of seed $SEED done"
	exit 0
fi

say "2. A student applies for a class: apply -> pay (the pivot) -> ship, all succeed"
OK=$(./sagactl -o json saga start apply --wait completion --input \
	'{"studentName":"kim","classId":"2","courseId":2,"addr":"SEOUL NAMGU","telephoneInfo":"010-1234-2345","payMethod":"BANK","payAccount":"1234-2334-4556-7890"}' \
	| jq -r .id)
run ./sagactl saga show "$OK"

say "3. A payment is declined (payAccount 0000-...): the pivot fails, the application is compensated"
BAD=$(./sagactl -o json saga start apply --wait completion --input \
	'{"studentName":"lee","classId":"3","courseId":3,"addr":"BUSAN","telephoneInfo":"010-9999-0000","payMethod":"CARD","payAccount":"0000-1111-2222-3333"}' \
	| jq -r .id)
run ./sagactl saga show "$BAD"

say "4. The same application with the textbook delivery over Kafka (apply-async: ship-async sends"
say "   DeliveryRequested to delivery-commands and waits for DeliveryStarted on delivery-events)"
ASYNC=$(./sagactl -o json saga start apply-async --wait completion --timeout 60s --input \
	'{"studentName":"park","classId":"4","courseId":4,"addr":"INCHEON","telephoneInfo":"010-5555-1234","payMethod":"BANK","payAccount":"5678-1234"}' \
	| jq -r .id)
run ./sagactl saga show "$ASYNC"

say "5. What the participants recorded (their own databases)"
printf 'classes:    '; curl -s "$CLASS_URL/classes" | jq -c '[._embedded.classes[] | {id, studentName, applyStatus}]'
printf 'payments:   '; curl -s "$PAYMENT_URL/payments" | jq -c '[._embedded.payments[] | {applyId, payStaus}]'
printf 'deliveries: '; curl -s "$DELIVERY_URL/deliveries" | jq -c '[._embedded.deliveries[] | {applyId, deliveryStatus}]'
printf 'kafka deliveries: '
curl -s "http://127.0.0.1:$(cat "$RUN/kafka-delivery.port")/deliveries" | jq -c '[(.deliveries // ._embedded.deliveries // .)[] | {applyId, deliveryStatus}]' 2>/dev/null || echo "-"
printf 'notifications (from the saga-events lifecycle topic): '
curl -s "http://127.0.0.1:$(cat "$RUN/kafka-notification.port")/messages" | jq -c 'if type == "array" then length else (.messages // ._embedded.messages // []) | length end' 2>/dev/null || echo "-"

say "6. All sagas"
run ./sagactl saga list

# The rest of seed 000: class-apply (breaker, fallback, events) and apply-cancel.
# shellcheck disable=SC1091
. examples/seed000/demo.sh
seed_tour

stay_if_asked
echo
echo "demo done: one saga completed ($OK), one compensated ($BAD), one over Kafka ($ASYNC)"
