// Shared pieces of the stack config schemas: strict-pattern strings, the OnCalendar validator, and
// the error format "<project>:<key><field path>: <problem>", one line per problem.
import { z } from "zod";
import { PatternName, valuePatterns } from "./patterns";

/** The config namespace of this project (Pulumi.yaml `name`). */
export const configNamespace = "agent-backups";

/**
 * A string that must match one of the strict patterns of scripts/lib/value-patterns. A value that
 * does not match is refused, never escaped; the message quotes it so the operator sees the culprit.
 */
export function patterned(name: PatternName, what: string): z.ZodString {
  const re = valuePatterns[name];
  return z.string().refine((v) => re.test(v), {
    error: (iss) => `${what}: refusing ${JSON.stringify(iss.input)}: not a valid ${name} (${re.source})`,
  }) as unknown as z.ZodString;
}

/** A TCP port, 1..65535. */
export const portSchema = z.number().int().min(1).max(65535);

/** An AWS region name such as eu-central-1. */
export const awsRegionPattern = valuePatterns.aws_region;

// --- systemd OnCalendar (the subset the backup timer needs) --------------------------------------

const calendarShorthands = new Set([
  "minutely", "hourly", "daily", "weekly", "monthly", "yearly", "annually", "quarterly", "semiannually",
]);
const weekdays = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const weekdayLong = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

function weekdayIndex(word: string): number {
  const w = word.toLowerCase();
  const i = weekdays.indexOf(w);
  return i >= 0 ? i : weekdayLong.indexOf(w);
}

/** `Mon`, `Mon..Fri`, `Sat,Sun`: problems with the weekday part, or none. */
function checkWeekdays(part: string): string[] {
  const problems: string[] = [];
  for (const item of part.split(",")) {
    const ends = item.split("..");
    if (ends.length > 2 || ends.some((d) => weekdayIndex(d) < 0)) problems.push(`bad weekday ${JSON.stringify(item)}`);
  }
  return problems;
}

/**
 * One calendar component: `*`, `N`, `A..B`, `N/R` or `*\/R`, and comma lists of these; every number
 * within [min, max]. `width` is the most digits the component may have.
 */
function checkComponent(value: string, label: string, min: number, max: number, width: number): string[] {
  const problems: string[] = [];
  const num = (s: string): number | undefined => (new RegExp(`^[0-9]{1,${width}}$`).test(s) ? Number(s) : undefined);
  for (const item of value.split(",")) {
    const [base = "", repeat, extra] = item.split("/");
    if (extra !== undefined) { problems.push(`${label} ${JSON.stringify(item)}: more than one "/"`); continue; }
    if (repeat !== undefined) {
      const r = num(repeat);
      if (r === undefined || r < 1) problems.push(`${label} ${JSON.stringify(item)}: repetition must be a positive number`);
    }
    if (base === "*") continue;
    const ends = base.split("..");
    if (ends.length > 2) { problems.push(`${label} ${JSON.stringify(item)}: bad range`); continue; }
    const nums = ends.map(num);
    if (nums.some((n) => n === undefined)) { problems.push(`${label} ${JSON.stringify(item)}: not a number, range or "*"`); continue; }
    for (const n of nums as number[]) {
      if (n < min || n > max) problems.push(`${label} ${n} out of range ${min}..${max}`);
    }
    if (nums.length === 2 && (nums[0] as number) > (nums[1] as number)) problems.push(`${label} range ${JSON.stringify(item)} runs backwards`);
  }
  return problems;
}

/**
 * Problems with a systemd OnCalendar expression, or [] when it is valid. Accepted: the shorthands
 * (daily, hourly, weekly, ...) and `[WEEKDAYS] [[YYYY-]MM-DD] [HH:MM[:SS]]` with `*`, lists, `..`
 * ranges and `/` repetition in every numeric component, optionally ending in `UTC`. At least a date
 * or a time must be present. Anything else (the `~` last-day form, time zones other than UTC,
 * fractional seconds) is refused rather than guessed at.
 */
export function onCalendarProblems(expr: string): string[] {
  const words = expr.trim().split(/\s+/).filter((w) => w !== "");
  if (words[words.length - 1] === "UTC") words.pop();
  if (words.length === 0) return ["empty expression"];
  if (words.length === 1 && calendarShorthands.has((words[0] as string).toLowerCase())) return [];
  const problems: string[] = [];
  let word = words.shift();
  if (word !== undefined && /^[A-Za-z]/.test(word)) {
    problems.push(...checkWeekdays(word));
    word = words.shift();
  }
  let sawDate = false;
  let sawTime = false;
  if (word !== undefined && word.includes("-") && !word.includes(":")) {
    sawDate = true;
    const parts = word.split("-");
    if (parts.length === 3) problems.push(...checkComponent(parts[0] as string, "year", 1970, 2199, 4));
    if (parts.length < 2 || parts.length > 3) problems.push(`bad date ${JSON.stringify(word)}: expected [YYYY-]MM-DD`);
    else {
      const [month, day] = parts.slice(-2) as [string, string];
      problems.push(...checkComponent(month, "month", 1, 12, 2), ...checkComponent(day, "day", 1, 31, 2));
    }
    word = words.shift();
  }
  if (word !== undefined && word.includes(":")) {
    sawTime = true;
    const parts = word.split(":");
    if (parts.length < 2 || parts.length > 3) problems.push(`bad time ${JSON.stringify(word)}: expected HH:MM[:SS]`);
    else {
      const [hour, minute, second] = parts as [string, string, string | undefined];
      problems.push(...checkComponent(hour, "hour", 0, 23, 2), ...checkComponent(minute, "minute", 0, 59, 2));
      if (second !== undefined) problems.push(...checkComponent(second, "second", 0, 59, 2));
    }
    word = words.shift();
  }
  if (word !== undefined) problems.push(`unexpected ${JSON.stringify([word, ...words].join(" "))}`);
  if (!sawDate && !sawTime && problems.length === 0) problems.push("needs a date or a time (or a shorthand such as daily)");
  return problems;
}

/** A systemd OnCalendar expression: the host's strict character pattern plus the real syntax check. */
export const onCalendarSchema = patterned("on_calendar", "OnCalendar expression").superRefine((v, ctx) => {
  for (const p of onCalendarProblems(v)) ctx.addIssue({ code: "custom", message: `invalid OnCalendar ${JSON.stringify(v)}: ${p}` });
});

// --- error format --------------------------------------------------------------------------------

/** `tenants[1].host.address` from a key and a zod issue path. */
export function fieldPath(key: string, path: readonly PropertyKey[]): string {
  return path.reduce<string>(
    (acc, p) => (typeof p === "number" ? `${acc}[${p}]` : `${acc}.${String(p)}`),
    `${configNamespace}:${key}`,
  );
}

/** One line per zod issue, each naming the stack key and the field. */
export function formatIssues(key: string, issues: readonly z.core.$ZodIssue[]): string[] {
  return issues.flatMap((iss) => {
    if (iss.code === "unrecognized_keys") {
      return iss.keys.map((k) => `${fieldPath(key, [...iss.path, k])}: unknown field (a typo?)`);
    }
    const missing = iss.code === "invalid_type" && /received undefined/.test(iss.message);
    return [`${fieldPath(key, iss.path)}: ${missing ? `required field is missing (${iss.message})` : iss.message}`];
  });
}

/** Thrown with every problem of a stack's config, before any resource exists. */
export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`invalid stack config (${problems.length} problem${problems.length === 1 ? "" : "s"}):\n  ${problems.join("\n  ")}`);
    this.name = "ConfigError";
  }
}
