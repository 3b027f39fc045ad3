// SPDX-License-Identifier: AGPL-3.0-or-later
// Random identifiers for actors and registrars.
//
// `NewUuid` is the one generator of the uuids that key registrations and
// identify actors (`tractor.v1.Aid.uuid`), so every process of a tree writes
// them in the same form.
#ifndef TRACTOR_DISCOVERY_UUID_H_
#define TRACTOR_DISCOVERY_UUID_H_

#include <string>

namespace tractor::discovery {

// Returns a new random (version 4, RFC 4122) UUID as 36 lower-case
// characters in the 8-4-4-4-12 form, e.g.
// "1b4e28ba-2fa1-4d2b-883f-0016d3cca427": the version digit is 4 and the
// variant digit one of 8, 9, a, b.
//
// Thread-safe and fork-safe: each thread draws from its own generator,
// seeded from the operating system's entropy, the process id and the thread;
// a forked child reseeds on its first call (the process id changed), so it
// never repeats its parent's sequence. Not for cryptographic secrets.
std::string NewUuid();

}  // namespace tractor::discovery

#endif  // TRACTOR_DISCOVERY_UUID_H_
