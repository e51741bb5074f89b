/* Error code texts, generated from the one list in errors.h. */
#include "errors.h"

#include <errno.h>

static const char *const coral__errtext[] = {
#define CORAL__ERR_TEXT(name, text) text,
	CORAL_ERRORS(CORAL__ERR_TEXT)
#undef CORAL__ERR_TEXT
};

const char *coral_strerror(int code)
{
	if (code == 0)
		return "success";
	int idx = code - CORAL__ERR_FIRST_ - 1;
	if (idx < 0 || idx >= (int)(sizeof(coral__errtext) / sizeof(coral__errtext[0])))
		return "unknown error";
	return coral__errtext[idx];
}

int coral_err_from_errno(int e)
{
	switch (e) {
	case ENOSPC:
	case EDQUOT: return CORAL_ENOSPC;
	case EROFS: return CORAL_EROFS;
	default: return CORAL_EIO;
	}
}
