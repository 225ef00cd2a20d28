/*
 * Everything a xenpy guest test needs.
 */

#ifndef XENPY_GUEST_H
#define XENPY_GUEST_H

#include <xenpy-guest/lib.h>
#include <xenpy-guest/hypervisor.h>
#include <xenpy-guest/console.h>
#include <xenpy-guest/smp.h>
#include <xenpy-guest/events.h>
#include <xenpy-guest/time.h>
#include <xenpy-guest/runstate.h>
#include <xenpy-guest/traps.h>
#include <xenpy-guest/test.h>
#include <xenpy-guest/check.h>
#include <xenpy-guest/xenstore.h>
#include <xenpy-guest/suspend.h>

#endif /* XENPY_GUEST_H */
