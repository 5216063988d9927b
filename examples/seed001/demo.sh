# shellcheck shell=sh
# examples/seed001/demo.sh -- seed 001 ("12th Street" shop) for scripts/demo.sh:
#   seed_start RUNDIR   starts order, productdelivery, marketing, message and orderstatus (HTTP)
#                       on ephemeral ports, records their pids in RUNDIR/*.pid and exports the
#                       SHOP_*_URL variables the flows read (the events go to Kafka topic `shop`).
#   seed_tour           a guided tour with ./sagactl against $SAGAD_URL.
# POSIX sh, sourced by scripts/demo.sh (its port_of, say and run are used here); run from the
# top of the repository.

seed_start() {
	S1RUN=$1
	for s in order productdelivery marketing message orderstatus; do
		python3 examples/seed001/shop.py "shop-$s" --port 0 --db "$S1RUN/shop-$s.db" \
			--port-file "$S1RUN/shop-$s.port" 2>"$S1RUN/shop-$s.log" &
		echo $! >"$S1RUN/shop-$s.pid"
	done
	SHOP_ORDER_URL="http://127.0.0.1:$(port_of "$S1RUN/shop-order.port")"
	SHOP_PRODUCTDELIVERY_URL="http://127.0.0.1:$(port_of "$S1RUN/shop-productdelivery.port")"
	SHOP_MARKETING_URL="http://127.0.0.1:$(port_of "$S1RUN/shop-marketing.port")"
	SHOP_MESSAGE_URL="http://127.0.0.1:$(port_of "$S1RUN/shop-message.port")"
	SHOP_ORDERSTATUS_URL="http://127.0.0.1:$(port_of "$S1RUN/shop-orderstatus.port")"
	export SHOP_ORDER_URL SHOP_PRODUCTDELIVERY_URL SHOP_MARKETING_URL SHOP_MESSAGE_URL \
		SHOP_ORDERSTATUS_URL
	echo "   order $SHOP_ORDER_URL, productdelivery $SHOP_PRODUCTDELIVERY_URL"
	echo "   marketing $SHOP_MARKETING_URL, message $SHOP_MESSAGE_URL, orderstatus $SHOP_ORDERSTATUS_URL"
}

seed001_records() { # orderId
	printf 'order:       '; curl -s "$SHOP_ORDER_URL/orders/$1" | jq -c '{id, payStatus, orderStatus}'
	printf 'delivery:    '; curl -s "$SHOP_PRODUCTDELIVERY_URL/stockDeliveries/search/findByOrderId?orderId=$1" | jq -c '[._embedded.stockDeliveries[] | .deliveryStatus]'
	printf 'coupon:      '; curl -s "$SHOP_MARKETING_URL/promotes/search/findByOrderId?orderId=$1" | jq -c '[._embedded.promotes[] | {couponId, couponUseYn, orderStatus}]'
	printf 'message:     '; curl -s "$SHOP_MESSAGE_URL/messages/search/findByOrderId?orderId=$1" | jq -c '[._embedded.messages[] | .messageStatus]'
	printf 'orderStatus: '; curl -s "$SHOP_ORDERSTATUS_URL/orderStatus/search/findByOrderId?orderId=$1" | jq -c '._embedded.orderStatus[0] // {} | {orderStatus, deliveryStatus, couponStatus, messageStatus}'
}

seed_tour() {
	S1IN='{"address":"Seoul","productId":"1001","payStatus":"Y","phoneNo":"01011110000","productName":"Mac","productPrice":3000000,"qty":1,"userId":"goodman","username":"John"}'
	say "2. An order (http POST /orders ... payStatus=Y): order -> OrderPlaced -> 'delivery Started'"
	say "   -> coupon (the pivot) -> DeliveryStarted -> 'Message Sended' + orderStatus view"
	O=$(./sagactl -o json saga start shop-order --wait completion --input "$S1IN" | jq -r .output.orderId)
	run ./sagactl saga list --key "orderId=$O"
	seed001_records "$O"

	say "3. No coupon for product 0000-1 (publishCoupon answers false): the delivery and the"
	say "   order are rolled back, no DeliveryStarted, no message"
	B=$(./sagactl -o json saga start shop-order --wait completion \
		--input "$(echo "$S1IN" | jq -c '.productId = "0000-1"')" | jq -r '.keys.orderId')
	run ./sagactl saga list --key "orderId=$B"
	seed001_records "$B"

	say "4. The customer cancels order $O (PATCH /orders/$O orderStatus='Order Canceled'):"
	say "   cancelCoupon || cancelMessage, then 'delivery Canceled', DeliveryCanceled, 'Order Canceled'"
	run ./sagactl saga start shop-order-cancel --wait completion --input "{\"orderId\":\"$O\"}" >/dev/null
	run ./sagactl saga list --key "orderId=$O"
	seed001_records "$O"

	say "5. A cancel whose message cancel answers false: the coupon cancel is undone, the"
	say "   delivery stays 'delivery Started'"
	O3=$(./sagactl -o json saga start shop-order --wait completion \
		--input "$(echo "$S1IN" | jq -c '.username = "Kim"')" | jq -r .output.orderId)
	curl -s -X POST -d '{"method":"POST","path":"/cancelMessage","status":200,"body":false,"times":1}' \
		"$SHOP_MESSAGE_URL/_control/faults" >/dev/null
	./sagactl saga start shop-order-cancel --wait completion --input "{\"orderId\":\"$O3\"}" >/dev/null
	run ./sagactl saga list --key "orderId=$O3"
	seed001_records "$O3"
}
