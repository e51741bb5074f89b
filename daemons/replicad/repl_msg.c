/* replicad's replication messages (repl_msg.h). */
#include "repl_msg.h"

#include "errors.h"
#include "frame.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <lz4.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>
#include <sys/random.h>

int repl_send(struct bufferevent *bev, const Coral__ReplMsg *m, size_t max)
{
	return coral_frame_append(bufferevent_get_output(bev), &m->base, max);
}

int repl_next(struct bufferevent *bev, size_t max, Coral__ReplMsg **out)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	const uint8_t *p;
	uint32_t len;
	int rc = coral_frame_next(in, max, &p, &len);
	if (rc <= 0)
		return rc;
	*out = coral__repl_msg__unpack(NULL, len, p);
	coral_frame_consume(in, len);
	return *out ? 1 : CORAL_EDECODE;
}

void repl_mac(const char *token, const char *side, const uint8_t nonce[REPL_NONCE], const char *cluster,
	      uint32_t thread, uint8_t out[REPL_MAC])
{
	uint8_t msg[64 + REPL_NONCE + 256 + 4];
	size_t n = 0;
	char label[64];
	int ln = snprintf(label, sizeof(label), "coral-repl %s", side);
	memcpy(msg + n, label, (size_t)ln + 1);
	n += (size_t)ln + 1;
	memcpy(msg + n, nonce, REPL_NONCE);
	n += REPL_NONCE;
	size_t cl = strnlen(cluster, 255);
	memcpy(msg + n, cluster, cl);
	n += cl;
	msg[n++] = 0;
	for (int i = 3; i >= 0; i--)
		msg[n++] = (uint8_t)(thread >> (8 * i));
	unsigned int outlen = REPL_MAC;
	HMAC(EVP_sha256(), token, (int)strlen(token), msg, n, out, &outlen);
}

bool repl_mac_ok(const char *token, const char *side, const uint8_t nonce[REPL_NONCE], const char *cluster,
		 uint32_t thread, const ProtobufCBinaryData *mac)
{
	uint8_t want[REPL_MAC];
	if (mac->len != REPL_MAC)
		return false;
	repl_mac(token, side, nonce, cluster, thread, want);
	return CRYPTO_memcmp(want, mac->data, REPL_MAC) == 0;
}

/* The label of a switchover step's proof: the step and the epoch are signed with it. */
static void switch_side(char *side, size_t sz, uint32_t step, uint64_t epoch)
{
	snprintf(side, sz, "switch %u %llu", step, (unsigned long long)epoch);
}

void repl_switch_mac(const char *token, const uint8_t nonce[REPL_NONCE], const char *cluster, uint32_t thread,
		     uint32_t step, uint64_t epoch, uint8_t out[REPL_MAC])
{
	char side[48];
	switch_side(side, sizeof(side), step, epoch);
	repl_mac(token, side, nonce, cluster, thread, out);
}

bool repl_switch_mac_ok(const char *token, const uint8_t nonce[REPL_NONCE], const char *cluster, uint32_t thread,
			uint32_t step, uint64_t epoch, const ProtobufCBinaryData *mac)
{
	char side[48];
	switch_side(side, sizeof(side), step, epoch);
	return repl_mac_ok(token, side, nonce, cluster, thread, mac);
}

int repl_nonce(uint8_t out[REPL_NONCE])
{
	return getrandom(out, REPL_NONCE, 0) == REPL_NONCE ? 0 : CORAL_ESYS;
}

size_t repl_compress(const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
	int c = LZ4_compress_default((const char *)in, (char *)out, (int)n, (int)cap);
	/* not worth the standby's decompression below a tenth saved */
	return c > 0 && (size_t)c < n - n / 10 ? (size_t)c : 0;
}

int repl_data_bytes(const Coral__ReplData *d, uint8_t *out, size_t cap)
{
	if (d->raw_len == 0 || d->raw_len > cap)
		return CORAL_EDECODE;
	if (!d->lz4) {
		if (d->bytes.len != d->raw_len)
			return CORAL_EDECODE;
		memcpy(out, d->bytes.data, d->raw_len);
		return 0;
	}
	int n = LZ4_decompress_safe((const char *)d->bytes.data, (char *)out, (int)d->bytes.len, (int)d->raw_len);
	return n == (int)d->raw_len ? 0 : CORAL_EDECODE;
}
