"""py-consul (PyPI) against a real directory node: the Consul client no one here wrote.

Usage: python py_consul.py HOST PORT. Exits non-zero with a message on the first failure.
Every wait is bounded; nothing sleeps blindly.
"""
import sys
import threading
import time

import consul


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAIL - {what}")
    print(f"ok - {what}")


def eventually(cond, what, limit=15.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if cond():
            print(f"ok - {what}")
            return
        time.sleep(0.1)
    raise SystemExit(f"FAIL - timed out: {what}")


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    c = consul.Consul(host=host, port=port)

    # Register with a TTL check: Consul starts a TTL check critical.
    check(c.agent.service.register("web", service_id="web-1", address="127.0.0.1", port=8080,
                                   tags=["v1"], meta={"zone": "a"}, check=consul.Check.ttl("30s")),
          "agent.service.register with a TTL check")
    index, nodes = c.health.service("web", passing=True)
    check(nodes == [], "health.service(passing=True) leaves the critical instance out")

    check(c.agent.check.ttl_pass("service:web-1"), "agent.check.ttl_pass renews the check")
    index, services = c.catalog.services()
    check(services.get("web") == ["v1"], f"catalog.services lists web with its tags: {services}")
    index, nodes = c.health.service("web", passing=True)
    check([n["Service"]["ID"] for n in nodes] == ["web-1"], "health.service(passing=True) has web-1")
    check(nodes[0]["Checks"][0]["Status"] == "passing", "its check is passing")
    index, entries = c.catalog.service("web", tag="v1")
    check(entries[0]["ServicePort"] == 8080 and entries[0]["ServiceMeta"] == {"zone": "a"},
          "catalog.service(tag=) has port and meta")
    _, filtered = c.health.service("web", filter_expr='Service.Meta.zone == "b"')
    check(filtered == [], "health.service(filter_expr=) filters")

    # A blocking query with nothing changing holds for its wait and returns the same index.
    start = time.monotonic()
    same, _ = c.health.service("web", index=index, wait="1s", passing=True)
    held = time.monotonic() - start
    check(same == index and held >= 0.9, f"a blocking query holds for its wait ({held:.2f}s)")

    # A blocking query woken by a change.
    result = {}

    def blocking():
        result["answer"] = c.health.service("web", index=index, wait="30s", passing=True)
        result["at"] = time.monotonic()

    waiter = threading.Thread(target=blocking)
    waiter.start()
    changed_at = time.monotonic()
    c.agent.service.register("web", service_id="web-2", address="127.0.0.1", port=8081,
                             check=consul.Check.ttl("30s"))
    c.agent.check.ttl_pass("service:web-2")
    waiter.join(timeout=20)
    check(not waiter.is_alive(), "the blocking query returned")
    new_index, nodes = result["answer"]
    check(int(new_index) > int(index), "with a newer index")
    check(result["at"] - changed_at < 10, "long before its 30s wait ran out")
    # It may wake on the registration (web-2 still critical) or after the pass.
    eventually(lambda: len(c.health.service("web", passing=True)[1]) == 2,
               "both instances pass")

    check(c.agent.service.deregister("web-2"), "agent.service.deregister")
    _, nodes = c.health.service("web")
    check([n["Service"]["ID"] for n in nodes] == ["web-1"], "web-2 is gone")

    # Expiry: a TTL check that is not passed again removes the instance at its lease.
    c.agent.service.register("temp", service_id="temp-1", address="127.0.0.1", port=9000,
                             check=consul.Check.ttl("2s"))
    c.agent.check.ttl_pass("service:temp-1")
    check(len(c.catalog.service("temp")[1]) == 1, "temp-1 registered")
    eventually(lambda: c.catalog.service("temp")[1] == [], "temp-1 expires when not passed")
    check("temp" not in c.catalog.services()[1], "and leaves the catalog")

    # Outside the subset: a clear error, never an empty success.
    for call in (lambda: c.kv.put("config/db", "x"), lambda: c.kv.get("config/db")):
        try:
            answer = call()
        except consul.ConsulException as e:
            check("consul_unsupported" in str(e), "the KV store is refused with consul_unsupported")
        else:
            raise SystemExit(f"FAIL - a KV call outside the subset answered {answer!r}")
    print("py-consul: all checks passed")


if __name__ == "__main__":
    main()
