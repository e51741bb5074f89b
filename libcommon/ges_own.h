/* The SGA section of lmdd's requester side: the locks the node's sessions hold or wait for,
 * wherever they are mastered. It lives in the SGA, not in lmdd, so that a restarted lmdd
 * still knows them: it puts every one back at its master (lmdd(8), RESTART), finds the
 * sessions that ended meanwhile, and answers their next conversion or unlock. lmdd alone
 * writes it; coralctl may read it (racy, for display). */
#ifndef CORAL_GES_OWN_H
#define CORAL_GES_OWN_H

#include "conf.h"
#include "sga.h"

#include <stddef.h>
#include <stdint.h>

#define CORAL_GES_OWN_MAX 8192     /* locks of the node's sessions at once */
#define CORAL_GES_NAME_MAX 64
#define CORAL_GES_LVB 32

struct coral_ges_own_lock {
	uint8_t used, dying, has_lvb, len;
	int8_t mode;              /* granted (-1: not yet) */
	uint8_t orphan;           /* an operation waited when the lmdd before died: it is
				   * cancelled once the lock is put back */
	int8_t prio;              /* its session's priority for deadlock victims */
	uint8_t async;            /* the operation under way was asked asynchronously: it ends
				   * as an event on the session's subscription */
	uint32_t session, slot;   /* the session's id and its slot index + 1 */
	uint32_t master;          /* where it was last sent */
	uint32_t op, want, flags, timeout_ms, resends;
	uint64_t lkid;
	uint64_t cookie;          /* the session's request waiting (lmdd's own table: not valid
				   * after a restart of lmdd) */
	uint64_t resend_ms;
	uint8_t name[CORAL_GES_NAME_MAX];
	uint8_t lvb[CORAL_GES_LVB];
};

struct coral_ges_own {
	uint32_t capacity, nused;
	uint64_t next_seq;        /* lock ids are made from it: never reused on the node */
	int32_t lmdd_pid;         /* the lmdd that last served (0: none yet) */
	uint32_t pad;
	struct coral_ges_own_lock locks[];
};

size_t coral_ges_own_sga_size(const struct coral_conf *conf);
int coral_ges_own_sga_init(void *section, size_t size, const struct coral_conf *conf, const struct coral_node_conf *node);
void coral_ges_own_sga_fill(const void *section, uint64_t *used, uint64_t *capacity);
struct coral_ges_own *coral_ges_own_sga(const struct coral_sga *sga);

#endif
