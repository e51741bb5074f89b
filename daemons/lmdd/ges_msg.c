/* lmdd's codec (see ges_msg.h). */
#include "ges_msg.h"

#include "codec.h"
#include "errors.h"

#include <string.h>

static const struct coral_codec_type ges_types[] = {
	{GES_NET_MSG, &coral__ges_msg__descriptor, "global enqueues"},
};

static const struct coral_codec ges_codec = {"ges", ges_types, 1};

static const char *const kind_names[GES_NKINDS] = {"?",      "request", "convert", "unlock",      "cancel",
						   "answer", "bast",    "rebuild", "rebuild-done",
						   "waits",  "victim",  "probe",   "unbast"};

const char *ges_kind_name(int kind) { return kind > 0 && kind < GES_NKINDS ? kind_names[kind] : "?"; }

Coral__GesMsg *ges_msg_decode(uint8_t type, const uint8_t *data, size_t len, uint64_t *refused)
{
	return (Coral__GesMsg *)coral_codec_decode(&ges_codec, type, data, len, refused);
}

void ges_msg_free(Coral__GesMsg *m) { coral_codec_free(m ? &m->base : NULL); }

uint8_t *ges_msg_pack(const Coral__GesMsg *m, uint8_t *stack, size_t stacksz, size_t *len)
{
	return coral_codec_pack(&m->base, stack, stacksz, len);
}

bool ges_msg_apply(struct ges_core *c, uint32_t from, const Coral__GesMsg *g, uint64_t now_ms, Coral__GesMsg *a,
		   struct ges_answer *ans)
{
	coral__ges_msg__init(a);
	a->kind = GES_ANSWER;
	a->op = g->kind;
	a->lkid = g->lkid;
	memset(ans, 0, sizeof(*ans));
	ans->gr = GES_NONE;
	if (g->kind < GES_REQUEST || g->kind > GES_CANCEL || g->name.len == 0 || g->name.len > GES_NAME_MAX ||
	    g->mode >= GES_NMODES || (g->lvb.len && g->lvb.len != GES_MSG_LVB)) {
		a->code = CORAL_EINVAL;
		return true;
	}
	const uint8_t *lvb = g->lvb.len == GES_MSG_LVB ? g->lvb.data : NULL;
	int rc;
	switch (g->kind) {
	case GES_REQUEST:
		rc = ges_request(c, from, g->session, g->lkid, g->name.data, g->name.len, (int)g->mode, g->flags,
				 g->timeout_ms, now_ms, ans);
		if ((rc == 0 || rc == CORAL_EPENDING) && g->priority != 0)
			ges_set_priority(c, from, g->lkid, g->priority);  /* out of range: left at 0 */
		break;
	case GES_CONVERT:
		rc = ges_convert(c, from, g->lkid, (int)g->mode, g->flags, g->timeout_ms, lvb, now_ms, ans);
		break;
	case GES_UNLOCK:
		rc = ges_unlock(c, from, g->lkid, lvb, now_ms);
		break;
	default:
		/* answered with the mode the lock keeps: what a restarted lmdd settles a conversion
		 * to whose answer was lost with its predecessor (lmdd(8), RESTART) */
		rc = ges_cancel(c, from, g->lkid, now_ms);
		ans->gr = ges_lock_mode(c, from, g->lkid);
		break;
	}
	if (rc == CORAL_EPENDING)
		return false;
	a->code = rc;
	a->mode = (uint32_t)(ans->gr < 0 ? 0 : ans->gr);
	a->demoted = ans->demoted;
	if (rc == 0 && (g->flags & GES_F_VALBLK) && (g->kind == GES_REQUEST || g->kind == GES_CONVERT)) {
		a->lvb.data = ans->lvb;
		a->lvb.len = GES_MSG_LVB;
		a->lvb_valid = ans->lvb_valid;
	}
	return true;
}
