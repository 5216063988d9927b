# shellcheck shell=sh
# examples/seed003/demo.sh -- seed 003 (Pizza Order & Delivery with Refund) for scripts/demo.sh:
#   seed_start RUNDIR   starts order, payment, refund (HTTP) and delivery, coupon, statusview
#                       (Kafka; $KAFKA = bootstrap servers) on ephemeral ports, records their
#                       pids in RUNDIR/*.pid and exports the PIZZA_*_URL variables the flows read.
#   seed_tour           a guided tour with ./sagactl against $SAGAD_URL.
# POSIX sh (scripts/demo.sh is /bin/sh); run from the top of the repository.

seed003_port() { # file
	_i=0
	while [ ! -s "$1" ]; do
		_i=$((_i + 1)); [ $_i -gt 150 ] && { echo "seed003: $1 did not appear" >&2; return 1; }
		sleep 0.1
	done
	cat "$1"
}

seed003_kafka() { # service port
	# shellcheck disable=SC2086
	/usr/bin/python3 examples/seed003/pizza_kafka.py "pizza-$1" --bootstrap "$KAFKA" \
		--db "$S3RUN/pizza-$1.db" --config fetch.wait.max.ms=10 --control-port "$2" \
		--control-port-file "$S3RUN/pizza-$1.port" 2>>"$S3RUN/pizza-$1.log" &
	echo $! >"$S3RUN/pizza-$1.pid"
}

# seed003_delivery: restarts delivery on its port (the flows' PIZZA_DELIVERY_URL).
seed003_delivery() {
	seed003_kafka delivery "${PIZZA_DELIVERY_URL##*:}"
}

seed_start() {
	S3RUN=$1
	for s in order payment refund; do
		python3 examples/seed003/pizza_http.py "pizza-$s" --port 0 --db "$S3RUN/pizza-$s.db" \
			--port-file "$S3RUN/pizza-$s.port" 2>"$S3RUN/pizza-$s.log" &
		echo $! >"$S3RUN/pizza-$s.pid"
	done
	for s in delivery coupon statusview; do
		seed003_kafka "$s" 0
	done
	PIZZA_ORDER_URL="http://127.0.0.1:$(seed003_port "$S3RUN/pizza-order.port")"
	PIZZA_PAYMENT_URL="http://127.0.0.1:$(seed003_port "$S3RUN/pizza-payment.port")"
	PIZZA_REFUND_URL="http://127.0.0.1:$(seed003_port "$S3RUN/pizza-refund.port")"
	PIZZA_DELIVERY_URL="http://127.0.0.1:$(seed003_port "$S3RUN/pizza-delivery.port")"
	PIZZA_COUPON_CTL="http://127.0.0.1:$(seed003_port "$S3RUN/pizza-coupon.port")"
	PIZZA_VIEW_CTL="http://127.0.0.1:$(seed003_port "$S3RUN/pizza-statusview.port")"
	export PIZZA_ORDER_URL PIZZA_PAYMENT_URL PIZZA_REFUND_URL PIZZA_DELIVERY_URL
	echo "   order $PIZZA_ORDER_URL, payment $PIZZA_PAYMENT_URL, refund $PIZZA_REFUND_URL"
	echo "   delivery $PIZZA_DELIVERY_URL (Kafka pizza-delivery-commands + SYNC refund API)"
	echo "   coupon $PIZZA_COUPON_CTL, statusview $PIZZA_VIEW_CTL (Kafka pizza-coupon, pizza-events)"
}

seed003_say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
seed003_run() { printf '$ %s\n' "$*"; "$@"; }
seed003_records() { # orderId
	printf 'order:      '; curl -s "$PIZZA_ORDER_URL/orders/$1" | jq -c '{id, pizzaId, qty, status}'
	printf 'payment:    '; curl -s "$PIZZA_PAYMENT_URL/payments/search/findByOrderId?orderId=$1" | jq -c '[._embedded.payments[] | .status]'
	printf 'delivery:   '
	if _d=$(curl -sf "$PIZZA_DELIVERY_URL/deliveries?orderId=$1"); then
		echo "$_d" | jq -c '[._embedded.deliveries[] | .deliveryStatus]'
	else
		echo "(delivery is down)"
	fi
	printf 'refunds:    '; curl -s "$PIZZA_REFUND_URL/refunds/search/findByOrderId?orderId=$1" | jq -c '[._embedded.refunds[] | {reason, status}]'
	printf 'coupons:    '; curl -s "$PIZZA_COUPON_CTL/coupons?orderId=$1" | jq -c '[._embedded.coupons[] | .status]'
	printf 'statusview: '; curl -s "$PIZZA_VIEW_CTL/statusviews?orderId=$1" | jq -c '._embedded.statusviews[0] // {} | {orderStatus, deliveryStatus, refundStatus, reason}'
}

seed_tour() {
	seed003_say "2. Order a pizza (http :8081/orders pizzaId=10 qty=1): order -> payment (pivot, 400-700 ms)"
	seed003_say "   -> Paid -> delivery over Kafka -> Delivered 'Finished' -> coupon 'published'"
	O=$(./sagactl -o json saga start pizza-order --wait completion --timeout 60s \
		--input '{"pizzaId":10,"qty":1}' | jq -r .output.orderId)
	sleep 1
	seed003_run ./sagactl saga list --key "orderId=$O"
	seed003_records "$O"

	seed003_say "3. A delivery that did not finish: the coupon step is skipped (when: deliveryStatus == 'Finished')"
	curl -s -X POST -d '{"deliveryStatus":"Delivering"}' "$PIZZA_DELIVERY_URL/_control/next-delivery-status" >/dev/null
	O2=$(./sagactl -o json saga start pizza-order --wait completion --timeout 60s \
		--input '{"pizzaId":11,"qty":2}' | jq -r .output.orderId)
	sleep 1
	seed003_run ./sagactl saga list --key "orderId=$O2"
	seed003_records "$O2"

	seed003_say "4. A refund (http :8086/refunds orderId=$O reason='delivery error'): delivery 'refunded'"
	seed003_say "   (SYNC pivot), Refunded -> coupon 'couponRefunded', reason in the status view"
	seed003_run ./sagactl saga start pizza-refund --wait completion \
		--input "{\"orderId\":$O,\"reason\":\"delivery error\"}" >/dev/null
	sleep 1
	seed003_records "$O"

	seed003_say "5. The refund is cancelled: delivery and coupon restored"
	seed003_run ./sagactl saga start pizza-refund-cancel --wait completion \
		--input "{\"orderId\":\"$O\"}" >/dev/null
	sleep 1
	seed003_records "$O"

	seed003_say "6. The customer cancels the second order: payment cancelled, delivery cancelled"
	seed003_run ./sagactl saga start pizza-order-cancel --wait completion \
		--input "{\"orderId\":\"$O2\"}" >/dev/null
	sleep 1
	seed003_records "$O2"

	seed003_say "7. Delivery down: a refund fails and commits nothing (reject-style pivot)"
	kill "$(cat "$S3RUN/pizza-delivery.pid")" 2>/dev/null || true
	sleep 1
	seed003_run ./sagactl saga start pizza-refund --wait completion \
		--input "{\"orderId\":$O,\"reason\":\"late\"}" || true
	seed003_records "$O"
	seed003_say "   (delivery restarted: refunds are accepted again once its breaker closes)"
	seed003_delivery

	seed003_say "8. The status view (my page) of order $O by its business key"
	seed003_run ./sagactl saga list --key "orderId=$O"
}
