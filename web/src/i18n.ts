const he = {
  you: "את/ה", assistant: "העוזר", copy: "העתקה", edit: "עריכה ושליחה מחדש", regenerate: "תשובה חדשה",
  interrupted: "התשובה נקטעה", stopped: "נעצר — התשובה החלקית נשמרה", midStreamError: "שגיאה באמצע התשובה — החלק שהתקבל נשמר",
  quota: "המכסה היומית נוצלה. מתאפסת ב־", tooMany: "יותר מדי בקשות, נסו שוב בעוד רגע", engineDown: "מנוע השפה אינו זמין כעת. נסו שוב.",
  connectionLost: "החיבור נותק — התשובה החלקית נשמרה. נסו שוב.", rename: "שינוי שם", confirmDelete: "למחוק את השיחה",
  history: "היסטוריית שיחות", newChat: "שיחה חדשה", search: "חיפוש בשיחות", untitled: "ללא כותרת", export: "ייצוא",
  delete: "מחיקה", more: "עוד", conversation: "שיחה", close: "סגירה", message: "הודעה", language: "שפת התשובה", auto: "אוטומטי",
  stop: "עצירה", send: "שליחה", chat: "צ׳אט", email: "דוא״ל", admin: "ניהול", signOut: "יציאה", signIn: "כניסה",
  username: "שם משתמש", password: "סיסמה", badLogin: "שם המשתמש או הסיסמה שגויים", theme: "ערכת צבעים",
  emailTitle: "סדנת דוא״ל", dropHere: "גררו לכאן קובצי ‎.eml‏ או הדביקו את תוכן ההודעה", analyze: "ניתוח", length: "אורך הסיכום (מילים)",
  notEmail: "אינו קובץ דוא״ל (‎.eml‏) — לא נשלח", tooBig: "גדול מדי — לא נשלח", tasks: "משימות", summary: "סיכום",
  assignee: "אחראי", title: "כותרת", description: "תיאור", due: "תאריך יעד", users: "משתמשים", usage: "שימוש", health: "בריאות המערכת",
  audit: "יומן ביקורת", create: "יצירה", role: "תפקיד", status: "מצב", source: "מקור", groups: "קבוצות",
};
export type Key = keyof typeof he;
export function t(key: Key): string {
  return he[key];
}
