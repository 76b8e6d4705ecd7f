module ctxkitbench

go 1.23
