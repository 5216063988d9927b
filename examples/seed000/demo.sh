# shellcheck shell=sh
# examples/seed000/demo.sh -- seed 000 (Online Class Application) for scripts/demo.sh:
#   seed_start RUNDIR   nothing to start: scripts/demo.sh always starts seed 000's participants
#                       (class, payment, delivery over HTTP; delivery and notification over
#                       Kafka) and exports CLASS_URL, PAYMENT_URL, DELIVERY_URL.
#   seed_tour           a guided tour with ./sagactl against $SAGAD_URL of class-apply and
#                       apply-cancel: an application, its mypage view by applyId, its cancel, a
#                       declined payment (fallback false: not accepted).
# POSIX sh (scripts/demo.sh is /bin/sh); run from the top of the repository.

seed_start() {
	: "seed 000's participants are started by scripts/demo.sh itself"
}

seed000_say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
seed000_run() { printf '$ %s\n' "$*"; "$@"; }
seed000_records() { # applyId
	printf 'class:    '; curl -s "$CLASS_URL/classes/$1" | jq -c '{id, studentName, applyStatus}'
	printf 'payment:  '; curl -s "$PAYMENT_URL/payments/search/findByApplyId?applyId=$1" | jq -c '[._embedded.payments[] | .payStaus]'
	printf 'delivery: '; curl -s "$DELIVERY_URL/deliveries/search/findByApplyId?applyId=$1" | jq -c '[._embedded.deliveries[] | .deliveryStatus]'
}

seed_tour() {
	S0IN='{"studentName":"학생2","classId":"2","courseId":2,"addr":"SEOUL NAMGU","telephoneInfo":"010-1234-2345","payMethod":"BANK","payAccount":"1234-2334-4556-7890"}'
	seed000_say "A. A student applies (class-apply): class ApplyRequest -> payment payApprove (the pivot,"
	seed000_say "   Hystrix breaker, 1 s timeout) -> delivery DeliveryStart -> ClassRegisted, PaymentAppoved,"
	seed000_say "   DeliveryStarted published on class-events"
	A=$(./sagactl -o json saga start class-apply --wait completion --input "$S0IN" | jq -r .output.applyId)
	seed000_say "   The mypage view by the business key applyId=$A:"
	seed000_run ./sagactl saga list --key "applyId=$A"
	seed000_records "$A"

	seed000_say "B. The student cancels (apply-cancel, the seed's PATCH /classes/$A applyStatus=CLASS_CANCELED):"
	seed000_say "   the application's saga compensates: DELIVERY_CANCEL, PaymentCancelled, CLASS_CANCELED;"
	seed000_say "   then ClassCanceled and PaymentCanceled are published"
	seed000_run ./sagactl saga start apply-cancel --wait completion --input "{\"applyId\":\"$A\"}" >/dev/null
	seed000_run ./sagactl saga list --key "applyId=$A"
	seed000_records "$A"

	seed000_say "C. A declined payment (payAccount 0000-...): payApprove answers false (as the Hystrix"
	seed000_say "   fallback would): the application is not accepted (CLASS_CANCELED), nothing shipped"
	D=$(./sagactl -o json saga start class-apply --wait completion \
		--input "$(echo "$S0IN" | jq -c '.payAccount = "0000-1111-2222-3333"')" | jq -r .output.applyId)
	seed000_run ./sagactl saga list --key "applyId=$D"
	seed000_records "$D"

	seed000_say "D. The seed's events on class-events (keyed by applyId)"
	if command -v kcat >/dev/null 2>&1; then
		timeout 5 kcat -q -b "$KAFKA" -C -t class-events -o beginning -e -f '%k %s\n' 2>/dev/null |
			cut -c1-160 || true
	else
		echo "(kcat is not installed)"
	fi
}
