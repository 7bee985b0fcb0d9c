import { useEffect, useState } from "preact/hooks";
import { getJson, send, type User } from "./api";
import { t } from "./i18n";

interface UsageRow { day: string; feature: string; user: string; group: string; requests: number; prompt_tokens: number; completion_tokens: number }
interface AuditItem { id?: string; at?: string; created_at?: string; actor?: string; action?: string; target?: string }

function Bars({ rows }: { rows: UsageRow[] }) {
  const byDay = new Map<string, number>();
  for (const r of rows) byDay.set(r.day, (byDay.get(r.day) ?? 0) + r.prompt_tokens + r.completion_tokens);
  const max = Math.max(1, ...byDay.values());
  return (
    <svg class="bars" role="img" aria-label={t("usage")} viewBox={`0 0 ${Math.max(1, byDay.size) * 24} 100`}>
      {[...byDay.entries()].map(([day, v], i) => <rect key={day} x={i * 24 + 4} y={100 - (v / max) * 100} width="16" height={(v / max) * 100}><title>{`${day}: ${v}`}</title></rect>)}
    </svg>
  );
}

export function Admin() {
  const [users, setUsers] = useState<User[]>([]);
  const [usage, setUsage] = useState<UsageRow[]>([]);
  const [health, setHealth] = useState<Record<string, unknown>>({});
  const [audit, setAudit] = useState<AuditItem[]>([]);
  const [actor, setActor] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [form, setForm] = useState({ username: "", password: "", role: "member" });

  const safe = async (job: () => Promise<void>) => { try { await job(); } catch (e) { setError((e as Error).message); } };
  const loadUsers = () => safe(async () => {
    const body = await getJson<{ users?: User[]; items?: User[] } | User[]>("/api/admin/users");
    setUsers(Array.isArray(body) ? body : body.users ?? body.items ?? []);
  });
  const loadAudit = () => safe(async () => {
    const q = new URLSearchParams({ limit: "50" });
    if (actor) q.set("actor", actor);
    setAudit((await getJson<{ items: AuditItem[] }>(`/api/admin/audit?${q}`)).items);
  });
  useEffect(() => {
    void loadUsers();
    void loadAudit();
    void safe(async () => setHealth(await getJson<Record<string, unknown>>("/api/health")));
    void safe(async () => setUsage((await getJson<{ rows: UsageRow[] }>("/api/admin/usage")).rows));
  }, []);

  async function create(e: Event) {
    e.preventDefault();
    await safe(async () => { await send("POST", "/api/admin/users", form); setForm({ username: "", password: "", role: "member" }); await loadUsers(); });
  }
  async function toggle(u: User) {
    await safe(async () => { await send("PATCH", `/api/admin/users/${u.id}`, { status: u.status === "active" ? "disabled" : "active" }); await loadUsers(); });
  }

  return (
    <div class="admin">
      {error ? <p class="mark" role="alert">{error}</p> : null}
      <section aria-label={t("health")}>
        <h2>{t("health")}</h2>
        <dl>{Object.entries(health).map(([k, v]) => <div key={k}><dt>{k}</dt><dd dir="ltr">{String(v)}</dd></div>)}</dl>
      </section>
      <section aria-label={t("users")}>
        <h2>{t("users")}</h2>
        <form class="row" onSubmit={create}>
          <input aria-label={t("username")} placeholder={t("username")} value={form.username} onInput={(e) => setForm({ ...form, username: (e.target as HTMLInputElement).value })} />
          <input aria-label={t("password")} placeholder={t("password")} type="password" value={form.password} onInput={(e) => setForm({ ...form, password: (e.target as HTMLInputElement).value })} />
          <select aria-label={t("role")} value={form.role} onChange={(e) => setForm({ ...form, role: (e.target as HTMLSelectElement).value })}><option value="member">member</option><option value="admin">admin</option></select>
          <button type="submit" class="primary">{t("create")}</button>
        </form>
        <table>
          <thead><tr><th>{t("username")}</th><th>{t("role")}</th><th>{t("status")}</th><th>{t("source")}</th><th>{t("groups")}</th><th /></tr></thead>
          <tbody>{users.map((u) => (
            <tr key={u.id}><td dir="auto">{u.display_name || u.username}</td><td>{u.role}</td><td>{u.status}</td>
              <td>{u.source === "ldap" ? "LDAP" : u.source}</td><td>{u.groups.join(", ")}</td>
              <td><button type="button" onClick={() => void toggle(u)}>{u.status === "active" ? "⏸" : "▶"}</button></td></tr>
          ))}</tbody>
        </table>
      </section>
      <section aria-label={t("usage")}><h2>{t("usage")}</h2><Bars rows={usage} /></section>
      <section aria-label={t("audit")}>
        <h2>{t("audit")}</h2>
        <form class="row" onSubmit={(e) => { e.preventDefault(); void loadAudit(); }}>
          <input aria-label="actor" placeholder="actor" value={actor} onInput={(e) => setActor((e.target as HTMLInputElement).value)} />
          <button type="submit">{t("search")}</button>
        </form>
        <ul>{audit.map((a, i) => <li key={a.id ?? i} dir="auto">{a.at ?? a.created_at} · {a.actor} · {a.action} · {a.target}</li>)}</ul>
      </section>
    </div>
  );
}
