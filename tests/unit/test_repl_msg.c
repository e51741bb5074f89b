/* replicad's proofs of the replication token (daemons/replicad/repl_msg.c): a hello's, and a
 * switchover step's, which fences a primary and must not be made by anyone without the
 * token or carried over to another step, epoch, connection or thread. */
#include "repl_msg.h"

#include <criterion/criterion.h>
#include <string.h>

static const char *token = "a shared secret of the two sites";

Test(repl_msg, a_switchover_step_is_proved_for_its_step_epoch_and_connection_only)
{
	uint8_t nonce[REPL_NONCE], other[REPL_NONCE], mac[REPL_MAC];
	cr_assert_eq(repl_nonce(nonce), 0);
	cr_assert_eq(repl_nonce(other), 0);
	cr_assert_neq(memcmp(nonce, other, REPL_NONCE), 0, "two nonces alike");
	repl_switch_mac(token, nonce, "east", 2, 2, 7, mac);
	ProtobufCBinaryData b = {REPL_MAC, mac};
	cr_expect(repl_switch_mac_ok(token, nonce, "east", 2, 2, 7, &b));
	cr_expect_not(repl_switch_mac_ok(token, nonce, "east", 2, 2, 8, &b), "another epoch");
	cr_expect_not(repl_switch_mac_ok(token, nonce, "east", 2, 3, 7, &b), "another step");
	cr_expect_not(repl_switch_mac_ok(token, other, "east", 2, 2, 7, &b), "another connection's nonce");
	cr_expect_not(repl_switch_mac_ok(token, nonce, "east", 3, 2, 7, &b), "another thread");
	cr_expect_not(repl_switch_mac_ok(token, nonce, "west", 2, 2, 7, &b), "another cluster");
	cr_expect_not(repl_switch_mac_ok("another token", nonce, "east", 2, 2, 7, &b), "another token");
	/* nor is a hello's proof taken for a step's */
	repl_mac(token, "standby", nonce, "east", 2, mac);
	cr_expect_not(repl_switch_mac_ok(token, nonce, "east", 2, 2, 7, &b), "the welcome's proof");
	ProtobufCBinaryData none = {0, NULL};
	cr_expect_not(repl_switch_mac_ok(token, nonce, "east", 2, 2, 7, &none), "no proof at all");
}
