# Sourced by wall.sh and versus.sh: `time_one BIN MODE N` prints the ns per op of one run of
# the `ops` program BIN in MODE at N ops, timed with `date +%s%N` around the process.
time_one() {
    local start end
    start=$(date +%s%N)
    "$1" "$2" "$3" >/dev/null
    end=$(date +%s%N)
    echo $(((end - start) / $3))
}
