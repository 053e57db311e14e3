#!/bin/sh
# melt's sampler for devices without Python (phones): POSIX sh, shell builtins for every read.
#
#   sh sampler.sh OUT_DIR INTERVAL_MS ROOT [PID] [CPU_PID]
#   sh sampler.sh --now        prints "CLOCK NS": a time stamp on the clock the sampler uses
#
# PID: the process whose RSS is recorded. CPU_PID: the process whose CPU time (utime + stime + cutime
# + cstime of /proc/CPU_PID/stat: itself and the children it has waited for) is the measured work,
# so that the host can tell CPU time other processes used (melt/analysis/busy.py); the sampler
# records its own CPU time too.
#
# Reads the same procfs/sysfs files as the Python probes (procfs, thermal, cpufreq,
# android_battery) under ROOT, every INTERVAL_MS, until SIGTERM/SIGINT/SIGHUP, and writes
#   OUT_DIR/trace.raw.csv  t_ns, then raw integer channels (the host converts: melt/telemetry/sh_trace.py)
#   OUT_DIR/sampler.json   the clock, the channels, the zone types and the battery supply
# A file that is missing or unreadable gives an empty cell, never a stop.
#
# Portable to dash, busybox ash and Android's mksh: no arrays, no `local`, no ${v//}, and no
# arithmetic on timestamps (mksh's arithmetic is 32-bit); values are read with the `read`
# builtin, so a sample forks nothing but `sleep` (and `date` when that is the clock).
# MELT_SH_CLOCK=monotonic|realtime|uptime forces a clock (tests); otherwise the first that works.

usage() {
    echo "usage: sh sampler.sh OUT_DIR INTERVAL_MS ROOT [PID] [CPU_PID]" >&2
    exit 2
}

if [ "${1-}" != "--now" ]; then # --now: print "CLOCK NS" with the clock the sampler would use, and exit
    [ $# -ge 3 ] || usage
    OUT=$1
    INTERVAL_MS=$2
    ROOT=${3%/}
    PID=${4-}
    CPU_PID=${5-}
    case $INTERVAL_MS in '' | *[!0-9]*) usage ;; esac
    [ "$INTERVAL_MS" -gt 0 ] || usage
    case $PID in *[!0-9]*) usage ;; esac
    case $CPU_PID in *[!0-9]*) usage ;; esac
    [ -d "$OUT" ] || mkdir -p "$OUT" || exit 1
fi

STOP=0
SPID=
trap 'STOP=1' TERM INT HUP

# --- helpers (results in variables: no command substitution, so no fork) ---

# V = first line of file $1, or empty
rd() {
    V=
    [ -r "$1" ] && read -r V 2>/dev/null <"$1"
    case $V in *"$CR") V=${V%"$CR"} ;; esac
}
CR=$(printf '\r')

# V kept only if it is an integer (optionally negative), else emptied
int() {
    case $V in '' | - | *[!0-9-]* | ?*-*) V= ;; esac
}

# V with commas, quotes and backslashes replaced (a CSV cell of free text)
text() {
    while :; do
        case $V in
        *,*) V="${V%%,*};${V#*,}" ;;
        *\"*) V="${V%%\"*}'${V#*\"}" ;;
        *\\*) V="${V%%\\*}/${V#*\\}" ;;
        *) break ;;
        esac
    done
}

# J = $1 as a JSON string body (backslash and double quote escaped)
json() {
    J=
    _j_rest=$1
    while :; do
        case $_j_rest in
        *[\\\"]*)
            _j_head=${_j_rest%%[\\\"]*}
            _j_rest=${_j_rest#"$_j_head"}
            case $_j_rest in \\*) J="$J$_j_head\\\\" ;; *) J="$J$_j_head\\\"" ;; esac
            _j_rest=${_j_rest#?}
            ;;
        *)
            J=$J$_j_rest
            break
            ;;
        esac
    done
}

# --- the clock: T = now in ns, as a digit string ---

clock_monotonic() { # CLOCK_MONOTONIC (ktime_get), the clock the agent stamps events with
    T=
    [ -r /proc/timer_list ] || return 0
    while read -r _tl_a _tl_b _tl_c _tl_d; do
        if [ "$_tl_a $_tl_b" = "now at" ]; then
            T=$_tl_c
            break
        fi
        case $_tl_a in cpu:) break ;; esac # past the header: no "now at" here
    done 2>/dev/null </proc/timer_list
    case $T in '' | *[!0-9]*) T= ;; esac
}

clock_realtime() { # wall clock, needs a date with %N (GNU, toybox, busybox with FEATURE_DATE_NANO)
    T=$(date +%s%N 2>/dev/null)
    case $T in '' | *[!0-9]*) T= ;; esac
    [ ${#T} -gt 12 ] || T=
}

clock_uptime() { # CLOCK_BOOTTIME in centiseconds, padded to ns by string (no arithmetic overflow)
    T=
    _up=
    read -r _up _up_idle 2>/dev/null </proc/uptime
    case $_up in
    *.*) _up_s=${_up%%.*} _up_f=${_up#*.}0000000000 ;;
    *) _up_s=$_up _up_f=000000000 ;;
    esac
    while [ ${#_up_f} -gt 9 ]; do _up_f=${_up_f%?}; done
    T=$_up_s$_up_f
    case $T in '' | *[!0-9]*) T= ;; esac
}

CLOCK=
for _clk in ${MELT_SH_CLOCK:-monotonic realtime uptime}; do
    case $_clk in monotonic | realtime | uptime) ;; *) continue ;; esac
    "clock_$_clk"
    if [ -n "$T" ]; then
        CLOCK=$_clk
        break
    fi
done
if [ -z "$CLOCK" ]; then
    echo "sampler.sh: no clock readable (/proc/timer_list, date +%s%N, /proc/uptime)" >&2
    exit 1
fi
if [ "${1-}" = "--now" ]; then
    echo "$CLOCK $T"
    exit 0
fi

# --- what this device has (found once, like the probes' detect) ---

# integer width: mksh wraps at 32 bits, dash/busybox/bash use 64
if [ $((2147483647 + 1)) -gt 0 ]; then INT_BITS=64; else INT_BITS=32; fi

SHELL_NAME=sh
if [ -n "${KSH_VERSION-}" ]; then
    SHELL_NAME=$KSH_VERSION
elif [ -n "${BASH_VERSION-}" ]; then
    SHELL_NAME="bash $BASH_VERSION"
elif [ -n "${ZSH_VERSION-}" ]; then
    SHELL_NAME="zsh $ZSH_VERSION"
else
    _exe=$(readlink "/proc/$$/exe" 2>/dev/null) && [ -n "$_exe" ] && SHELL_NAME=$_exe
fi

HEADER="t_ns,cpu.busy_ticks,cpu.total_ticks,cpu.steal_ticks,sampler.cpu_ticks,mem.total_kb,mem.available_kb"
[ -n "$CPU_PID" ] && HEADER="$HEADER,proc.cpu_ticks"
[ -n "$PID" ] && HEADER="$HEADER,proc.rss_kb"

ZONES=
ZONES_JSON=
for _z in "$ROOT"/sys/class/thermal/thermal_zone*; do
    [ -d "$_z" ] || continue
    _n=${_z##*thermal_zone}
    case $_n in '' | *[!0-9]*) continue ;; esac
    ZONES="$ZONES $_n"
    HEADER="$HEADER,zone$_n.temp_mc"
    rd "$_z/type"
    json "$V"
    ZONES_JSON="$ZONES_JSON${ZONES_JSON:+, }\"zone$_n\": \"$J\""
done

POLICIES=
POLICIES_JSON=
CPUFREQ="$ROOT/sys/devices/system/cpu/cpufreq"
for _p in "$CPUFREQ"/policy*; do
    [ -d "$_p" ] || continue
    _n=${_p##*policy}
    case $_n in '' | *[!0-9]*) continue ;; esac
    POLICIES="$POLICIES $_n"
    HEADER="$HEADER,policy$_n.cur_khz,policy$_n.max_khz"
    json "$_p"
    POLICIES_JSON="$POLICIES_JSON${POLICIES_JSON:+, }\"policy$_n\": \"$J\""
done
if [ -z "$POLICIES" ]; then # older kernels: one cpufreq folder per CPU
    CPUFREQ=
    for _p in "$ROOT"/sys/devices/system/cpu/cpu[0-9]*/cpufreq; do
        [ -d "$_p" ] || continue
        _n=${_p%/cpufreq}
        _n=${_n##*/cpu}
        case $_n in '' | *[!0-9]*) continue ;; esac
        POLICIES="$POLICIES $_n"
        HEADER="$HEADER,policy$_n.cur_khz,policy$_n.max_khz"
        json "$_p"
        POLICIES_JSON="$POLICIES_JSON${POLICIES_JSON:+, }\"policy$_n\": \"$J\""
    done
fi

policy_dir() { # P = the folder of policy $1
    if [ -n "$CPUFREQ" ]; then P="$CPUFREQ/policy$1"; else P="$ROOT/sys/devices/system/cpu/cpu$1/cpufreq"; fi
}

# V = the value of POWER_SUPPLY_$2 in the uevent file of supply folder $1, or empty
uevent_key() {
    V=
    [ -r "$1/uevent" ] || return 0
    while IFS='=' read -r _uk _uv; do
        case $_uk in "POWER_SUPPLY_$2") V=$_uv && break ;; esac
    done 2>/dev/null <"$1/uevent"
}

# every supply of type Battery (type file, else POWER_SUPPLY_TYPE in uevent), by name order, but
# those of scope Device (a peripheral's battery) or present 0: the host chooses among them and says
# why (melt/telemetry/sh_trace.py). BAT_<k> holds the folder of battery<k>.
BATTERIES=
BATTERIES_JSON=
BATTERY=
_bn=0
for _s in "$ROOT"/sys/class/power_supply/*; do
    [ -d "$_s" ] || continue
    rd "$_s/type"
    [ -n "$V" ] || uevent_key "$_s" TYPE
    case $V in [Bb][Aa][Tt][Tt][Ee][Rr][Yy]) ;; *) continue ;; esac
    rd "$_s/scope"
    [ -n "$V" ] || uevent_key "$_s" SCOPE
    case $V in [Dd][Ee][Vv][Ii][Cc][Ee]) continue ;; esac
    rd "$_s/present"
    [ -n "$V" ] || uevent_key "$_s" PRESENT
    [ "$V" = 0 ] && continue
    eval "BAT_$_bn=\$_s"
    [ -n "$BATTERY" ] || BATTERY=$_s
    BATTERIES="$BATTERIES $_bn"
    HEADER="$HEADER,battery$_bn.current_raw,battery$_bn.voltage_raw,battery$_bn.power_raw,battery$_bn.temp_raw,battery$_bn.status"
    json "$_s"
    BATTERIES_JSON="$BATTERIES_JSON${BATTERIES_JSON:+, }\"battery$_bn\": \"$J\""
    _bn=$((_bn + 1))
done

# --- sampler.json: written before the first row, so a killed sampler still leaves it ---

CHANNELS_JSON=
_rest=${HEADER#t_ns,},
while [ -n "$_rest" ]; do
    CHANNELS_JSON="$CHANNELS_JSON${CHANNELS_JSON:+, }\"${_rest%%,*}\""
    _rest=${_rest#*,}
done
json "$SHELL_NAME"
_shell=$J
json "${ROOT:-/}"
_root=$J
json "$BATTERY"
_battery=$J
[ -n "$BATTERY" ] && _battery="\"$_battery\"" || _battery=null
SLEEP=$((INTERVAL_MS / 1000)).$((INTERVAL_MS % 1000 / 100))$((INTERVAL_MS % 100 / 10))$((INTERVAL_MS % 10))
if ! sleep 0.001 2>/dev/null; then # a sleep without fractions: whole seconds, at least one
    SLEEP=$(((INTERVAL_MS + 999) / 1000))
fi
{
    printf '{\n  "clock": "%s",\n  "interval_ms": %s,\n  "sleep": "%s",\n' "$CLOCK" "$INTERVAL_MS" "$SLEEP"
    printf '  "channels": [%s],\n  "shell": "%s",\n  "int_bits": %s,\n' "$CHANNELS_JSON" "$_shell" "$INT_BITS"
    printf '  "root": "%s",\n  "pid": %s,\n  "zones": {%s},\n' "$_root" "${PID:-null}" "$ZONES_JSON"
    printf '  "policies": {%s},\n  "battery": %s,\n  "batteries": {%s}\n}\n' "$POLICIES_JSON" "$_battery" "$BATTERIES_JSON"
} >"$OUT/sampler.json" || exit 1

# --- one row ---

# V = utime + stime + cutime + cstime of /proc/PID/stat $1 (proc(5) fields 14-17), or empty. The fields
# are counted after the last ")": the command name may hold spaces and parentheses.
cpu_ticks() {
    V=
    _line=
    [ -r "$1" ] && read -r _line 2>/dev/null <"$1"
    case $_line in *")"*) ;; *) return 0 ;; esac
    # shellcheck disable=SC2086 # split on purpose: the fields after the name
    set -- ${_line##*")"}
    [ $# -ge 15 ] || return 0
    case "${12}${13}${14}${15}" in '' | *[!0-9]*) return 0 ;; esac
    V=$((${12} + ${13} + ${14} + ${15}))
}

sample() {
    "clock_$CLOCK"
    ROW=$T

    # /proc/stat, first line: busy = user+nice+system+irq+softirq+steal, total = those + idle + iowait
    # (the first eight fields, as procfs.py: guest time is already inside user and nice)
    _busy= _total= _st=
    _ps=$ROOT/proc/stat
    if [ -r "$_ps" ] && read -r _cpu _user _nice _sys _idle _iow _irq _sirq _steal _guest 2>/dev/null <"$_ps"; then
        _ok=1
        for _f in "$_user" "$_nice" "$_sys" "$_idle" "${_iow:-0}" "${_irq:-0}" "${_sirq:-0}" "${_steal:-0}"; do
            case $_f in '' | *[!0-9]*) _ok= ;; esac
        done
        if [ "$_cpu" = cpu ] && [ -n "$_ok" ]; then
            _busy=$((_user + _nice + _sys + ${_irq:-0} + ${_sirq:-0} + ${_steal:-0}))
            _total=$((_busy + _idle + ${_iow:-0}))
            _st=${_steal:-0}
        fi
    fi
    ROW="$ROW,$_busy,$_total,$_st"
    cpu_ticks "/proc/$$/stat" # the sampler's own (with its sleep and date children), from this machine
    ROW="$ROW,$V"

    if [ -n "$CPU_PID" ]; then # read under ROOT, as /proc/stat is, so the two are of one machine
        cpu_ticks "$ROOT/proc/$CPU_PID/stat"
        _cpu_pid_ticks=$V
    fi

    _mt= _ma=
    if [ -r "$ROOT/proc/meminfo" ]; then
        while read -r _k _v _unit; do
            case $_k in
            MemTotal:) _mt=$_v ;;
            MemAvailable:) _ma=$_v && break ;;
            esac
        done 2>/dev/null <"$ROOT/proc/meminfo"
    fi
    V=$_mt && int && _mt=$V
    V=$_ma && int && _ma=$V
    ROW="$ROW,$_mt,$_ma"
    [ -n "$CPU_PID" ] && ROW="$ROW,$_cpu_pid_ticks"

    if [ -n "$PID" ]; then
        _rss=
        for _f in "$ROOT/proc/$PID/status" "/proc/$PID/status"; do # recorded first, then this machine's
            [ -r "$_f" ] || continue
            while read -r _k _v _unit; do
                case $_k in VmRSS:) _rss=$_v && break ;; esac
            done 2>/dev/null <"$_f"
            [ -n "$_rss" ] && break
        done
        V=$_rss && int
        ROW="$ROW,$V"
    fi

    for _n in $ZONES; do
        rd "$ROOT/sys/class/thermal/thermal_zone$_n/temp"
        int
        ROW="$ROW,$V"
    done

    for _n in $POLICIES; do
        policy_dir "$_n"
        rd "$P/scaling_cur_freq"
        int
        ROW="$ROW,$V"
        rd "$P/scaling_max_freq"
        [ -n "$V" ] || rd "$P/cpuinfo_max_freq"
        int
        ROW="$ROW,$V"
    done

    for _n in $BATTERIES; do
        eval "_b=\$BAT_$_n"
        _bi= _bv= _bp= _bt= _bs=
        rd "$_b/current_now" && int && _bi=$V
        rd "$_b/voltage_now" && int && _bv=$V
        rd "$_b/power_now" && int && _bp=$V
        rd "$_b/temp" && int && _bt=$V
        rd "$_b/status" && text && _bs=$V
        if { [ -z "$_bi" ] || [ -z "$_bv" ] || [ -z "$_bt" ] || [ -z "$_bs" ]; } && [ -r "$_b/uevent" ]; then
            while IFS='=' read -r _k _v; do # what the files did not give, from uevent
                case $_k in
                POWER_SUPPLY_CURRENT_NOW) [ -n "$_bi" ] || { V=$_v && int && _bi=$V; } ;;
                POWER_SUPPLY_VOLTAGE_NOW) [ -n "$_bv" ] || { V=$_v && int && _bv=$V; } ;;
                POWER_SUPPLY_POWER_NOW) [ -n "$_bp" ] || { V=$_v && int && _bp=$V; } ;;
                POWER_SUPPLY_TEMP) [ -n "$_bt" ] || { V=$_v && int && _bt=$V; } ;;
                POWER_SUPPLY_STATUS) [ -n "$_bs" ] || { V=$_v && text && _bs=$V; } ;;
                esac
            done 2>/dev/null <"$_b/uevent"
        fi
        ROW="$ROW,$_bi,$_bv,$_bp,$_bt,$_bs"
    done
}

# --- the loop: the sleep runs while the row is read, so reading time does not add to the interval ---

exec 3>"$OUT/trace.raw.csv" || exit 1
echo "$HEADER" >&3
while [ "$STOP" = 0 ]; do
    sleep "$SLEEP" </dev/null >/dev/null 2>&1 &
    SPID=$!
    sample
    echo "$ROW" >&3
    [ "$STOP" = 0 ] && wait "$SPID" # a trapped signal ends the wait at once
done
if [ -n "$SPID" ]; then # the interval's sleep, cut short and reaped
    kill "$SPID" 2>/dev/null
    wait "$SPID" 2>/dev/null
fi
exec 3>&-
exit 0
