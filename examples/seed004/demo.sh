# shellcheck shell=sh
# examples/seed004/demo.sh -- seed 004 ("ssak5" payment-method registration/change) for
# scripts/demo.sh:
#   seed_start RUNDIR   starts paymethod, payment and reservation (HTTP, examples/seed004/ssak5.py)
#                       and the Kafka `message` service (ssak5_message.py, topic ssak5-events) on
#                       ephemeral ports, records their pids in RUNDIR/*.pid and exports
#                       SSAK5_PAYMETHOD_URL, SSAK5_PAYMENT_URL, SSAK5_RESERVATION_URL and
#                       SSAK5_MESSAGE_URL (the message service's control/GET port).  Needs $KAFKA.
#   seed_tour           a guided tour with ./sagactl against $SAGAD_URL.
# POSIX sh (scripts/demo.sh is /bin/sh); run from the top of the repository.

seed004_port() { # file
	_i=0
	while [ ! -s "$1" ]; do
		_i=$((_i + 1)); [ $_i -gt 150 ] && { echo "seed004: $1 did not appear" >&2; return 1; }
		sleep 0.1
	done
	cat "$1"
}

seed_start() {
	S4RUN=$1
	for s in paymethod ssak5-payment reservation; do
		python3 examples/seed004/ssak5.py "$s" --port 0 --db "$S4RUN/ssak5-$s.db" \
			--port-file "$S4RUN/ssak5-$s.port" 2>"$S4RUN/ssak5-$s.log" &
		echo $! >"$S4RUN/ssak5-$s.pid"
	done
	/usr/bin/python3 examples/seed004/ssak5_message.py message --bootstrap "$KAFKA" \
		--db "$S4RUN/ssak5-message.db" --group ssak5-message --config fetch.wait.max.ms=10 \
		--control-port 0 --control-port-file "$S4RUN/ssak5-message.port" \
		2>"$S4RUN/ssak5-message.log" &
	echo $! >"$S4RUN/ssak5-message.pid"
	SSAK5_PAYMETHOD_URL="http://127.0.0.1:$(seed004_port "$S4RUN/ssak5-paymethod.port")"
	SSAK5_PAYMENT_URL="http://127.0.0.1:$(seed004_port "$S4RUN/ssak5-ssak5-payment.port")"
	SSAK5_RESERVATION_URL="http://127.0.0.1:$(seed004_port "$S4RUN/ssak5-reservation.port")"
	SSAK5_MESSAGE_URL="http://127.0.0.1:$(seed004_port "$S4RUN/ssak5-message.port")"
	export SSAK5_PAYMETHOD_URL SSAK5_PAYMENT_URL SSAK5_RESERVATION_URL SSAK5_MESSAGE_URL
	echo "   paymethod $SSAK5_PAYMETHOD_URL, payment $SSAK5_PAYMENT_URL"
	echo "   reservation $SSAK5_RESERVATION_URL, message (Kafka, ssak5-events) $SSAK5_MESSAGE_URL"
}

seed004_say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
seed004_run() { printf '$ %s\n' "$*"; "$@"; }
seed004_messages() { # requestId
	sleep 1
	printf 'messages: '; curl -s "$SSAK5_MESSAGE_URL/messages?requestId=$1" | jq -c '[._embedded.messages[] | {requestId, status}]'
}

seed_tour() {
	seed004_say "2. Register a payment method (http POST /paymethods kind=credit number=40095003 requestId=101):"
	seed004_say "   paymethod -> payment payKindChange 'Payment kind Registered' (the pivot) -> KindRegistered"
	seed004_run ./sagactl saga start paymethod-register --wait completion \
		--input '{"kind":"credit","number":40095003,"requestId":101}' >/dev/null
	printf 'paymethod: '; curl -s "$SSAK5_PAYMETHOD_URL/paymethods/search/findByApplyId?applyId=101" | jq -c '[._embedded.paymethods[] | {id, kind, number, requestId}]'
	seed004_messages 101

	seed004_say "3. Change it (http PATCH /paymethods kind=bank number=13212 requestId=101): the registration"
	seed004_say "   is found by requestId, PATCH /paymethods/{id}, KindChanged"
	seed004_run ./sagactl saga start paymethod-change --wait completion \
		--input '{"kind":"bank","number":13212,"requestId":101}' >/dev/null
	printf 'paymethod: '; curl -s "$SSAK5_PAYMETHOD_URL/paymethods/search/findByApplyId?applyId=101" | jq -c '[._embedded.paymethods[] | {id, kind, number, requestId}]'
	seed004_messages 101
	seed004_say "   The dashboard view of requestId 101 (the seed uses 1; 101 keeps it apart from reservation ids, which are requestIds too):"
	seed004_run ./sagactl saga list --key requestId=101

	seed004_say "4. A cleaning reservation (price 300000, customerName noh): reservation -> payment"
	seed004_say "   PaymentApproved (the pivot) -> the status chooses PayConfirmed ('PaymentCompleted')"
	R=$(./sagactl -o json saga start cleaning-reservation --wait completion --input \
		'{"requestDate":"20200909","place":"pangyo","status":"ReservationApply","price":300000,"customerName":"noh"}' |
		jq -r .output.requestId)
	seed004_messages "$R"

	seed004_say "5. Its payment is cancelled (cleaning-cancel): payment PaymentCancel -> PayCancelConfirmed"
	seed004_run ./sagactl saga start cleaning-cancel --wait completion --input "{\"requestId\":$R}" >/dev/null
	seed004_messages "$R"
	seed004_run ./sagactl saga list --key "requestId=$R"

	seed004_say "6. A registration whose payment fails is rolled back (the payment answers 500 twice):"
	curl -s -X POST -H 'Content-Type: application/json' \
		--data '{"method":"POST","path":"/payments","status":500,"times":2}' \
		"$SSAK5_PAYMENT_URL/_control/faults" >/dev/null
	seed004_run ./sagactl saga start paymethod-register --wait completion \
		--input '{"kind":"credit","number":5555,"requestId":102}' >/dev/null || true
	seed004_run ./sagactl saga list --key requestId=102
	printf 'paymethod rows for requestId 102: '; curl -s "$SSAK5_PAYMETHOD_URL/paymethods/search/findByApplyId?applyId=102" | jq -c '._embedded.paymethods | length'
}
