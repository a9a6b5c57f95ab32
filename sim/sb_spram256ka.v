// Behavioural SB_SPRAM256KA (iCE40UP5K single-port RAM, 16K x 16) for Verilator: the access
// rules of yosys' ice40 cells_sim.v model, with the undefined read data of a write cycle made
// visible (the inverted word) so a testbench that relied on it fails. No power-down modes (the
// engine ties STANDBY = SLEEP = 0, POWEROFF = 1).
/* verilator lint_off UNUSEDSIGNAL */
/* verilator lint_off DECLFILENAME */
module SB_SPRAM256KA (
    input [13:0] ADDRESS,
    input [15:0] DATAIN,
    input [3:0] MASKWREN,
    input WREN,
    input CHIPSELECT,
    input CLOCK,
    input STANDBY,
    input SLEEP,
    input POWEROFF,
    output reg [15:0] DATAOUT
);
    reg [15:0] mem [0:16383];
    always @(posedge CLOCK) begin
        if (CHIPSELECT) begin
            if (!WREN) begin
                DATAOUT <= mem[ADDRESS];
            end else begin
                if (MASKWREN[0]) mem[ADDRESS][ 3: 0] <= DATAIN[ 3: 0];
                if (MASKWREN[1]) mem[ADDRESS][ 7: 4] <= DATAIN[ 7: 4];
                if (MASKWREN[2]) mem[ADDRESS][11: 8] <= DATAIN[11: 8];
                if (MASKWREN[3]) mem[ADDRESS][15:12] <= DATAIN[15:12];
                DATAOUT <= ~mem[ADDRESS];
            end
        end
    end
endmodule
/* verilator lint_on UNUSEDSIGNAL */
