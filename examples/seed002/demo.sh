# shellcheck shell=sh
# examples/seed002/demo.sh -- seed 002 (smartphone pre-reservation) for scripts/demo.sh:
#   seed_start RUNDIR   starts prereservation and payment (HTTP) and receipt and myreservation
#                       (Kafka topic `prereservation`; $KAFKA = bootstrap servers) on ephemeral
#                       ports, records their pids in RUNDIR/*.pid and exports PRE_RESERVATION_URL
#                       and PRE_PAYMENT_URL for the flows.
#   seed_tour           a guided tour with ./sagactl against $SAGAD_URL.
# POSIX sh, sourced by scripts/demo.sh (its port_of, say and run are used here); run from the
# top of the repository.

seed_start() {
	S2RUN=$1
	# The seed's payment sleeps 400-620 ms against a 620 ms timeout: about one payment in
	# twenty times out and is compensated. Keep the demo's path deterministic.
	PRE_PAYMENT_DELAY_MS=${PRE_PAYMENT_DELAY_MS:-400-500}
	export PRE_PAYMENT_DELAY_MS
	for s in prereservation payment; do
		python3 examples/seed002/prereservation.py "pre-$s" --port 0 --db "$S2RUN/pre-$s.db" \
			--port-file "$S2RUN/pre-$s.port" 2>"$S2RUN/pre-$s.log" &
		echo $! >"$S2RUN/pre-$s.pid"
	done
	for s in receipt myreservation; do
		/usr/bin/python3 examples/seed002/prereservation_kafka.py "pre-$s" --bootstrap "$KAFKA" \
			--db "$S2RUN/pre-$s.db" --config fetch.wait.max.ms=10 --control-port 0 \
			--control-port-file "$S2RUN/pre-$s.port" 2>"$S2RUN/pre-$s.log" &
		echo $! >"$S2RUN/pre-$s.pid"
	done
	PRE_RESERVATION_URL="http://127.0.0.1:$(port_of "$S2RUN/pre-prereservation.port")"
	PRE_PAYMENT_URL="http://127.0.0.1:$(port_of "$S2RUN/pre-payment.port")"
	PRE_RECEIPT_CTL="http://127.0.0.1:$(port_of "$S2RUN/pre-receipt.port")"
	PRE_MYRES_CTL="http://127.0.0.1:$(port_of "$S2RUN/pre-myreservation.port")"
	export PRE_RESERVATION_URL PRE_PAYMENT_URL
	echo "   prereservation $PRE_RESERVATION_URL, payment $PRE_PAYMENT_URL"
	echo "   receipt $PRE_RECEIPT_CTL, myreservation $PRE_MYRES_CTL (Kafka topic prereservation)"
}

seed002_records() { # preReservationId
	printf 'preReservation: '; curl -s "$PRE_RESERVATION_URL/preReservations/$1" | jq -c 'if .id then {id, status, productName} else "deleted (404)" end'
	printf 'payments:       '; curl -s "$PRE_PAYMENT_URL/payments/search/findByPreReservationId?preReservationId=$1" | jq -c '[._embedded.payments[] | {id, price, createdAt}]'
	printf 'receipts:       '; curl -s "$PRE_RECEIPT_CTL/receipts" | jq -c --arg r "$1" '[._embedded.receipts[] | select((.preReservationId | tostring) == $r) | {paidId, expectedDeliveryAt}]'
	printf 'myReservations: '; curl -s "$PRE_MYRES_CTL/myReservations" | jq -c --arg r "$1" '[._embedded.myReservations[] | select((.preReservationId | tostring) == $r) | {status, paymentId, expectedDeliveryAt}]'
}

seed_tour() {
	S2IN='{"userId":"1","userAddress":"seoul","productId":"1","productName":"fold","price":"1300000","cardNo":"1234-1234-1234-1234","status":"order"}'
	say "2. A pre-reservation (http POST :8088/preReservations ... status=order): ReservationCreated,"
	say "   payment (the pivot, 400+ ms, 620 ms timeout), PaymentCreated -> receipt (+21 days)"
	R=$(./sagactl -o json saga start prereservation --wait completion --timeout 60s --input "$S2IN" \
		| jq -r .output.preReservationId)
	sleep 1
	run ./sagactl saga list --key "preReservationId=$R"
	seed002_records "$R"

	say "3. The payment fails (an injected 500): the reservation is compensated"
	say "   (deleted, ReservationCancelled with status reservation_cancelled)"
	curl -s -X POST -d '{"method":"POST","path":"/payments","status":500,"times":1}' \
		"$PRE_PAYMENT_URL/_control/faults" >/dev/null
	R2=$(./sagactl -o json saga start prereservation --wait completion --input "$S2IN" | jq -r .keys.preReservationId)
	sleep 1
	run ./sagactl saga list --key "preReservationId=$R2"
	seed002_records "$R2"

	say "4. The user cancels reservation $R (DELETE /preReservations/$R): payments and receipts"
	say "   deleted, ReservationCancelled published; myReservations keeps it as cancelled"
	run ./sagactl saga start prereservation-cancel --wait completion \
		--input "{\"preReservationId\":\"$R\"}" >/dev/null
	sleep 1
	run ./sagactl saga list --key "preReservationId=$R"
	seed002_records "$R"
}
