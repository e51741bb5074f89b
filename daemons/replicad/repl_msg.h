/* replicad's replication messages (proto/repl.proto) on a connection: each frame one
 * ReplMsg; the proofs of the token both sides give (HMAC-SHA256 over the other side's
 * nonce, the primary cluster's name and the thread, with a label per side so that one side's
 * proof is never the other's); lz4 of the shipped bytes. Used by sender.c (the primary) and
 * receiver.c (the standby). */
#ifndef CORAL_REPLICAD_REPL_MSG_H
#define CORAL_REPLICAD_REPL_MSG_H

#include "repl.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REPL_VERSION 1
#define REPL_NONCE 32
#define REPL_MAC 32

struct bufferevent;

/* Queues m as one frame on bev. CORAL_ETOOBIG past max. */
int repl_send(struct bufferevent *bev, const Coral__ReplMsg *m, size_t max);
/* The next whole frame on bev decoded into *out (free with coral__repl_msg__free_unpacked):
 * 1, 0 (more bytes needed) or a CORAL_E* code (a frame to refuse, undecodable). */
int repl_next(struct bufferevent *bev, size_t max, Coral__ReplMsg **out);

/* side is "primary" or "standby". */
void repl_mac(const char *token, const char *side, const uint8_t nonce[REPL_NONCE], const char *cluster,
	      uint32_t thread, uint8_t out[REPL_MAC]);
bool repl_mac_ok(const char *token, const char *side, const uint8_t nonce[REPL_NONCE], const char *cluster,
		 uint32_t thread, const ProtobufCBinaryData *mac);
/* A switchover step's proof (ReplSwitch.mac): the standby's, over the nonce of the
 * primary's hello on the same connection, the step and the epoch. */
void repl_switch_mac(const char *token, const uint8_t nonce[REPL_NONCE], const char *cluster, uint32_t thread,
		     uint32_t step, uint64_t epoch, uint8_t out[REPL_MAC]);
bool repl_switch_mac_ok(const char *token, const uint8_t nonce[REPL_NONCE], const char *cluster, uint32_t thread,
			uint32_t step, uint64_t epoch, const ProtobufCBinaryData *mac);
/* 32 random bytes (getrandom). */
int repl_nonce(uint8_t out[REPL_NONCE]);

/* lz4 of n bytes into out (cap bytes): its length, or 0 when it does not shrink them. */
size_t repl_compress(const uint8_t *in, size_t n, uint8_t *out, size_t cap);
/* The bytes of a ReplData into out (raw_len bytes, at most cap): 0, or CORAL_EDECODE. */
int repl_data_bytes(const Coral__ReplData *d, uint8_t *out, size_t cap);

#endif
