import { useState } from "preact/hooks";
import { send } from "./api";
import { t } from "./i18n";

interface Task { sender: string; sending_date: string; assigned_to: string; title: string; description: string; due_date: string | null }
interface Summary { sender: string; sending_date: string; title: string; summary: string }
interface Result { name: string; tasks: Task[]; summary: Summary | null; error?: string }

export const MAX_EMAIL_BYTES = 1_000_000;

function looksLikeEmail(text: string): boolean {
  return /^(from|to|subject|date|received|message-id|return-path|mime-version):/im.test(text.slice(0, 8000));
}

function download(name: string, type: string, body: string) {
  const url = URL.createObjectURL(new Blob([body], { type }));
  const a = Object.assign(document.createElement("a"), { href: url, download: name });
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function ics(tasks: Task[]): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+/, "");
  const esc = (s: string) => s.replace(/[\\;,]/g, (c) => "\\" + c).replace(/\n/g, "\\n");
  const items = tasks.map((task, i) => [
    "BEGIN:VTODO", `UID:task-${i}-${stamp}@plg-ai`, `DTSTAMP:${stamp}`, `SUMMARY:${esc(task.title)}`,
    `DESCRIPTION:${esc(task.description)}`, ...(task.due_date ? [`DUE;VALUE=DATE:${task.due_date.replace(/-/g, "")}`] : []), "END:VTODO",
  ].join("\r\n"));
  return ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//PLG-AI//Email tasks//HE", ...items, "END:VCALENDAR", ""].join("\r\n");
}

function csv(tasks: Task[]): string {
  const cell = (s: string | null) => `"${(s ?? "").replace(/"/g, '""')}"`;
  const rows = tasks.map((k) => [k.assigned_to, k.title, k.description, k.due_date, k.sender, k.sending_date].map(cell).join(","));
  return "\ufeff" + ["assigned_to,title,description,due_date,sender,sending_date", ...rows].join("\r\n");
}

export function EmailWorkbench() {
  const [pasted, setPasted] = useState("");
  const [length, setLength] = useState(100);
  const [results, setResults] = useState<Result[]>([]);
  const [messages, setMessages] = useState<string[]>([]);
  const [progress, setProgress] = useState<[number, number] | null>(null);

  async function analyze(items: { name: string; text: string }[]) {
    const out: Result[] = [];
    setProgress([0, items.length]);
    for (const [i, item] of items.entries()) {
      try {
        const [tasks, summary] = await Promise.all([
          send<Task[]>("POST", "/api/tasks/extract", { email_content: item.text }),
          send<Summary>("POST", "/api/summarization/summarize", { email_content: item.text, length }),
        ]);
        out.push({ name: item.name, tasks, summary });
      } catch (e) {
        out.push({ name: item.name, tasks: [], summary: null, error: (e as Error).message });
      }
      setProgress([i + 1, items.length]);
      setResults([...out]);
    }
    setProgress(null);
  }

  async function files(list: FileList | null) {
    if (!list) return;
    const ok: { name: string; text: string }[] = [];
    const refused: string[] = [];
    for (const file of Array.from(list)) {
      if (file.size > MAX_EMAIL_BYTES) { refused.push(`${file.name}: ${t("tooBig")}`); continue; }
      const text = await file.text();
      if (!/\.eml$/i.test(file.name) || !looksLikeEmail(text)) { refused.push(`${file.name}: ${t("notEmail")}`); continue; }
      ok.push({ name: file.name, text });
    }
    setMessages(refused);
    if (ok.length) await analyze(ok);
  }

  const allTasks = results.flatMap((r) => r.tasks);
  return (
    <div class="email">
      <h1>{t("emailTitle")}</h1>
      <div class="drop" role="region" aria-label={t("dropHere")}
        onDragOver={(e) => e.preventDefault()}
        onDrop={(e) => { e.preventDefault(); void files(e.dataTransfer?.files ?? null); }}>
        <p>{t("dropHere")}</p>
        <input type="file" accept=".eml,message/rfc822" multiple aria-label={t("dropHere")} onChange={(e) => void files((e.target as HTMLInputElement).files)} />
        <textarea dir="auto" aria-label={t("message")} value={pasted} onInput={(e) => setPasted((e.target as HTMLTextAreaElement).value)} />
        <label>{t("length")} <input type="number" min={20} max={500} value={length} onInput={(e) => setLength(Number((e.target as HTMLInputElement).value))} /></label>
        <button type="button" class="primary" disabled={!pasted.trim() || progress !== null}
          onClick={() => { if (new Blob([pasted]).size > MAX_EMAIL_BYTES) setMessages([t("tooBig")]); else void analyze([{ name: "pasted", text: pasted }]); }}>{t("analyze")}</button>
      </div>
      {messages.map((m) => <p key={m} class="mark" role="alert">{m}</p>)}
      {progress ? <progress aria-label={t("analyze")} value={progress[0]} max={progress[1]} /> : null}
      {allTasks.length ? (
        <div class="downloads">
          <button type="button" onClick={() => download("tasks.ics", "text/calendar", ics(allTasks))}>ICS</button>
          <button type="button" onClick={() => download("tasks.csv", "text/csv", csv(allTasks))}>CSV</button>
        </div>
      ) : null}
      {results.map((r) => (
        <section key={r.name} class="result" aria-label={r.name}>
          <h2 dir="auto">{r.summary?.title ?? r.name}</h2>
          {r.error ? <p class="mark" role="alert">{r.error}</p> : null}
          {r.summary ? <p dir="auto"><b>{r.summary.sender}</b> · {r.summary.sending_date}<br />{r.summary.summary}</p> : null}
          <table>
            <thead><tr><th>{t("assignee")}</th><th>{t("title")}</th><th>{t("description")}</th><th>{t("due")}</th></tr></thead>
            <tbody>{r.tasks.map((k, i) => <tr key={i}><td dir="auto">{k.assigned_to}</td><td dir="auto">{k.title}</td><td dir="auto">{k.description}</td><td>{k.due_date ?? ""}</td></tr>)}</tbody>
          </table>
        </section>
      ))}
    </div>
  );
}
