import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError, getJson, send, stream } from "./api";
import { render } from "./markdown";
import { t } from "./i18n";

interface Summary { session_id: string; title: string | null; updated_at: string }
interface Stored { id?: string; role: string; content: string; status?: string }
interface Msg { role: "user" | "assistant"; content: string; status: "complete" | "streaming" | "interrupted" | "error"; note?: string }

function newId(): string {
  return "chat_" + crypto.randomUUID().replace(/-/g, "");
}

function Message({ msg, onEdit, onRetry }: { msg: Msg; onEdit?: () => void; onRetry?: () => void }) {
  const html = msg.role === "assistant" ? render(msg.content) : null;
  return (
    <article class={`msg ${msg.role} ${msg.status}`} aria-label={msg.role === "user" ? t("you") : t("assistant")}>
      {html !== null ? <div class="md" dir="auto" dangerouslySetInnerHTML={{ __html: html }} /> : <p dir="auto" class="plain">{msg.content}</p>}
      {msg.status === "interrupted" || msg.status === "error" ? <p class="mark" role="status">{msg.note ?? t("interrupted")}</p> : null}
      <div class="tools">
        <button type="button" aria-label={t("copy")} onClick={() => void navigator.clipboard.writeText(msg.content)}>⧉</button>
        {onEdit ? <button type="button" aria-label={t("edit")} onClick={onEdit}>✎</button> : null}
        {onRetry ? <button type="button" aria-label={t("regenerate")} onClick={onRetry}>↻</button> : null}
      </div>
    </article>
  );
}

export function Chat() {
  const [sessions, setSessions] = useState<Summary[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [query, setQuery] = useState("");
  const [sessionId, setSessionId] = useState<string>(() => location.hash.match(/^#\/c\/(\w+)/)?.[1] ?? newId());
  const [messages, setMessages] = useState<Msg[]>([]);
  const [draft, setDraft] = useState("");
  const [language, setLanguage] = useState<"auto" | "hebrew" | "english">("auto");
  const [busy, setBusy] = useState(false);
  const [banner, setBanner] = useState<string | null>(null);
  const abort = useRef<AbortController | null>(null);
  const input = useRef<HTMLTextAreaElement>(null);
  const search = useRef<HTMLInputElement>(null);

  async function loadList(more = false) {
    const params = new URLSearchParams({ limit: "30" });
    if (query.trim()) params.set("q", query.trim());
    if (more && next) params.set("before", next);
    const page = await getJson<{ sessions: Summary[]; next: string | null }>(`/api/sessions?${params}`);
    setSessions(more ? [...sessions, ...page.sessions] : page.sessions);
    setNext(page.next);
  }

  async function open(id: string) {
    abort.current?.abort();
    setSessionId(id);
    location.hash = `#/c/${id}`;
    try {
      const body = await getJson<{ messages: Stored[] }>(`/api/sessions/${id}`);
      setMessages(body.messages.filter((m) => m.role !== "system").map((m) => ({
        role: m.role as Msg["role"], content: m.content,
        status: (m.status === "interrupted" || m.status === "error" ? m.status : "complete") as Msg["status"],
      })));
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) setMessages([]);
      else throw e;
    }
  }

  function newChat() {
    abort.current?.abort();
    const id = newId();
    setSessionId(id);
    setMessages([]);
    location.hash = `#/c/${id}`;
    input.current?.focus();
  }

  useEffect(() => { void loadList(); }, [query]);
  useEffect(() => { if (location.hash.startsWith("#/c/")) void open(sessionId); }, []);
  useEffect(() => {
    const keys = (e: KeyboardEvent) => {
      if (e.key === "Escape" && abort.current) { abort.current.abort(); e.preventDefault(); }
      if ((e.ctrlKey || e.metaKey) && e.shiftKey && e.key.toLowerCase() === "o") { newChat(); e.preventDefault(); }
      if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "k") { search.current?.focus(); e.preventDefault(); }
    };
    addEventListener("keydown", keys);
    return () => removeEventListener("keydown", keys);
  });

  async function ask(turns: Msg[]) {
    setBanner(null);
    // Reloading comes back to this conversation, from the server.
    if (location.hash !== `#/c/${sessionId}`) history.replaceState(null, "", `#/c/${sessionId}`);
    const controller = new AbortController();
    abort.current = controller;
    setBusy(true);
    const reply: Msg = { role: "assistant", content: "", status: "streaming" };
    let shown = [...turns, reply];
    setMessages(shown);
    let pending = "";
    let frame = 0;
    const flush = () => {
      frame = 0;
      reply.content += pending;
      pending = "";
      shown = [...shown.slice(0, -1), { ...reply }];
      setMessages(shown);
    };
    try {
      await stream("/api/chat/stream", {
        messages: turns.map(({ role, content }) => ({ role, content })),
        session_id: sessionId, language, stream: true,
      }, controller.signal, (event) => {
        if (event.type === "content" && event.content) {
          pending += event.content;
          // One render per animation frame, however many tokens arrive: keeps tasks short.
          if (!frame) frame = requestAnimationFrame(flush);
        } else if (event.type === "error") {
          reply.status = "error";
          reply.note = t("midStreamError");
        }
      });
      if (frame) cancelAnimationFrame(frame);
      flush();
      if (reply.status === "streaming") reply.status = "complete";
    } catch (e) {
      if (frame) cancelAnimationFrame(frame);
      reply.content += pending;
      if (controller.signal.aborted) { reply.status = "interrupted"; reply.note = t("stopped"); }
      else if (e instanceof ApiError && e.status === 429) {
        const at = e.resetsAt;
        setBanner(at ? `${t("quota")} ${new Date(at).toLocaleString()}` : `${t("tooMany")}`);
        reply.status = "error"; reply.note = e.message;
      } else if (e instanceof ApiError && e.status === 503) {
        setBanner(t("engineDown")); reply.status = "error"; reply.note = t("engineDown");
      } else if (e instanceof ApiError && e.status === 401) {
        return;
      } else { reply.status = "error"; reply.note = t("connectionLost"); }
    } finally {
      abort.current = null;
      setBusy(false);
    }
    setMessages([...shown.slice(0, -1), { ...reply }]);
    void loadList();
  }

  function submit(e?: Event) {
    e?.preventDefault();
    const text = draft.trim();
    if (!text || busy) return;
    setDraft("");
    void ask([...messages.filter((m) => m.status !== "streaming"), { role: "user", content: text, status: "complete" }]);
  }

  function edit(index: number) {
    const text = prompt(t("edit"), messages[index].content);
    if (text === null || !text.trim()) return;
    void ask([...messages.slice(0, index), { role: "user", content: text.trim(), status: "complete" }]);
  }

  async function rename(s: Summary) {
    const title = prompt(t("rename"), s.title ?? "");
    if (title && title.trim()) { await send("PATCH", `/api/sessions/${s.session_id}`, { title: title.trim() }); void loadList(); }
  }
  async function remove(s: Summary) {
    if (!confirm(`${t("confirmDelete")} «${s.title ?? s.session_id}»?`)) return;
    await send("DELETE", `/api/sessions/${s.session_id}`);
    if (s.session_id === sessionId) newChat();
    void loadList();
  }

  return (
    <div class="chat">
      <aside class="sidebar" aria-label={t("history")}>
        <button type="button" class="primary" onClick={newChat}>{t("newChat")}</button>
        <input ref={search} type="search" aria-label={t("search")} placeholder={t("search")} value={query}
          onInput={(e) => setQuery((e.target as HTMLInputElement).value)} />
        <ul>
          {sessions.map((s) => (
            <li key={s.session_id} class={s.session_id === sessionId ? "current" : ""}>
              <button type="button" class="title" dir="auto" onClick={() => void open(s.session_id)}>{s.title ?? t("untitled")}</button>
              <button type="button" aria-label={`${t("rename")} ${s.title ?? ""}`} onClick={() => void rename(s)}>✎</button>
              <a aria-label={`${t("export")} ${s.title ?? ""}`} href={`/api/sessions/${s.session_id}/export?format=markdown`} download>⇩</a>
              <button type="button" aria-label={`${t("delete")} ${s.title ?? ""}`} onClick={() => void remove(s)}>🗑</button>
            </li>
          ))}
        </ul>
        {next ? <button type="button" onClick={() => void loadList(true)}>{t("more")}</button> : null}
      </aside>
      <section class="conversation" aria-label={t("conversation")}>
        {banner ? <div class="banner" role="alert">{banner} <button type="button" onClick={() => setBanner(null)}>{t("close")}</button></div> : null}
        <div class="messages" aria-live="polite">
          {messages.map((m, i) => (
            <Message key={i} msg={m}
              onEdit={m.role === "user" && !busy ? () => edit(i) : undefined}
              onRetry={m.role === "assistant" && !busy && i === messages.length - 1 ? () => void ask(messages.slice(0, i)) : undefined} />
          ))}
        </div>
        <form class="composer" onSubmit={submit}>
          <textarea ref={input} dir="auto" aria-label={t("message")} placeholder={t("message")} value={draft}
            onInput={(e) => setDraft((e.target as HTMLTextAreaElement).value)}
            onKeyDown={(e) => { if (e.key === "Enter" && !e.shiftKey) submit(e); }} />
          <select aria-label={t("language")} value={language} onChange={(e) => setLanguage((e.target as HTMLSelectElement).value as typeof language)}>
            <option value="auto">{t("auto")}</option><option value="hebrew">עברית</option><option value="english">English</option>
          </select>
          {busy ? <button type="button" class="stop" onClick={() => abort.current?.abort()}>{t("stop")}</button>
            : <button type="submit" class="primary">{t("send")}</button>}
        </form>
      </section>
    </div>
  );
}
